"""``sam2edge segment IMAGE [--obj ID] --point X,Y[:LABEL] --box X0,Y0,X1,Y1 --out mask.png [--overlay o.png]``

Writes the best mask of each object (PNG, 0/255, the image's size), optionally an overlay, and
prints the scores. Several objects in one command: start each object's prompts with --obj ID;
masks are then written as <out stem>-<ID><ext> (mask-1.png, mask-2.png, ...), one image
embedding serves them all.

    sam2edge segment photo.jpg --point 320,240 --out mask.png
    sam2edge segment photo.jpg --obj 1 --box 10,20,200,220 --obj 2 --point 400,300 --point 420,310:0 --out mask.png

Masks are lossless (.png, .bmp, .tif); every path is checked before the model runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from sam2edge.cli.common import ObjectPrompt, add_model_options, add_object_options, load_model, object_prompts
from sam2edge.cli.outputs import check_image_path, check_mask_path, write_image
from sam2edge.cli.overlay import draw_overlay
from sam2edge.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file (anything OpenCV reads)")
    add_object_options(p)
    p.add_argument("--out", required=True, help="where to write the best mask (PNG, 0/255); with several objects, "
                                                "<stem>-<ID><ext> per object")
    p.add_argument("--overlay", help="where to write the image with the masks and prompts drawn on it")
    p.add_argument("--multimask", action="store_true", help="ask for 3 candidate masks and keep the best-scoring one")
    p.add_argument("--json", action="store_true", help="print scores and paths as JSON on stdout")
    add_model_options(p)


def mask_paths(out: str, objects: list[ObjectPrompt]) -> list[Path]:
    if len(objects) == 1:
        return [Path(out)]
    base = Path(out)
    return [base.with_name(f"{base.stem}-{o.obj}{base.suffix}") for o in objects]


def run(args: argparse.Namespace) -> int:
    objects = object_prompts(args)
    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"image {args.image!r} could not be read (missing file or not an image)")
    paths = [check_mask_path(p, "--out", (args.image,)) for p in mask_paths(args.out, objects)]
    if args.overlay:
        check_image_path(args.overlay, "--overlay", (args.image, *paths))
    model = load_model(args)
    embeddings = model.embed_images(bgr)
    results = []
    for obj, path in zip(objects, paths):
        coords = np.array([p[:2] for p in obj.points], np.float32) if obj.points else None
        labels = np.array([p[2] for p in obj.points], np.int32) if obj.points else None
        box = np.array(obj.box, np.float32) if obj.box is not None else None
        pred = model.segment_images(embeddings=embeddings, point_coordinates=coords, point_labels=labels, boxes=box,
                                    multi_mask_output=args.multimask)[0]
        best = int(np.argmax(pred.scores))
        mask = np.asarray(pred.masks[best], dtype=bool)
        write_image(path, mask.astype(np.uint8) * 255, "--out")
        results.append({"obj": obj.obj, "mask": str(path), "scores": [float(s) for s in np.ravel(pred.scores)],
                        "best": best, "mask_area": int(mask.sum()), "_mask": mask})
    if args.overlay:
        picture = draw_overlay(bgr, [r["_mask"] for r in results], [p for o in objects for p in o.points],
                               [o.box for o in objects])
        write_image(args.overlay, picture, "--overlay")
    objects_report = [{k: v for k, v in r.items() if k != "_mask"} for r in results]
    report = {"image": args.image, "overlay": args.overlay, "backend": model.active_backend, "objects": objects_report}
    if len(results) == 1:  # the single-object keys, as before
        report.update({k: objects_report[0][k] for k in ("mask", "scores", "best", "mask_area")})
    if args.json:
        print(json.dumps(report))
    else:
        for r in objects_report:
            print(f"object {r['obj']}: mask {r['mask']}, area {r['mask_area']} px, score {r['scores'][r['best']]:.3f} "
                  f"({model.active_backend})", file=sys.stderr)
    return 0
