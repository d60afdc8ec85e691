"""``sam2edge segment IMAGE --point X,Y[:LABEL] --box X0,Y0,X1,Y1 --out mask.png [--overlay o.png]``

Writes the best mask (PNG, 0/255, the image's size), optionally an overlay, and prints the scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from sam2edge.cli.common import add_model_options, load_model, parse_box, parse_point
from sam2edge.cli.overlay import draw_overlay
from sam2edge.errors import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file (anything OpenCV reads)")
    p.add_argument("--point", action="append", type=parse_point, default=[], metavar="X,Y[:LABEL]",
                   help="a click in pixels; label 1 foreground (default), 0 background; repeatable")
    p.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="a box in pixels")
    p.add_argument("--out", required=True, help="where to write the best mask (PNG, 0/255)")
    p.add_argument("--overlay", help="where to write the image with the mask and prompts drawn on it")
    p.add_argument("--multimask", action="store_true", help="ask for 3 candidate masks and keep the best-scoring one")
    p.add_argument("--json", action="store_true", help="print scores and paths as JSON on stdout")
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"image {args.image!r} could not be read (missing file or not an image)")
    if not args.point and args.box is None:
        raise InputError("give at least one --point X,Y[:LABEL] or a --box X0,Y0,X1,Y1")
    model = load_model(args)
    coords = np.array([p[:2] for p in args.point], np.float32) if args.point else None
    labels = np.array([p[2] for p in args.point], np.int32) if args.point else None
    box = np.array(args.box, np.float32) if args.box is not None else None
    pred = model.segment_images(bgr, point_coordinates=coords, point_labels=labels, boxes=box,
                                multi_mask_output=args.multimask)[0]
    best = int(np.argmax(pred.scores))
    mask = np.asarray(pred.masks[best], dtype=bool)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, mask.astype(np.uint8) * 255)
    if args.overlay:
        cv2.imwrite(args.overlay, draw_overlay(bgr, [mask], args.point, [args.box]))
    report = {"image": args.image, "mask": args.out, "overlay": args.overlay, "backend": model.active_backend,
              "scores": [float(s) for s in np.ravel(pred.scores)], "best": best, "mask_area": int(mask.sum())}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"mask {args.out}: area {report['mask_area']} px, score {report['scores'][best]:.3f} "
              f"({model.active_backend})", file=sys.stderr)
    return 0
