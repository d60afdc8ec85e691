"""`sam2edge segment`: best mask, an overlay a person can look at, and scores."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from sam2edge.errors import InputError
from sam2edge.runtime.image.predictor import SAM2


def parse_point(text: str) -> tuple[float, float, int]:
    """'X,Y' or 'X,Y:LABEL' -> (x, y, label); label 1 (foreground) by default."""
    try:
        xy, _, label = text.partition(":")
        x, y = (float(v) for v in xy.split(","))
        return x, y, int(label) if label else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"--point expects X,Y or X,Y:LABEL (e.g. 320,240:1), got {text!r}") from None


def parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"--box expects X0,Y0,X1,Y1, got {text!r}")
    return vals  # type: ignore[return-value]


def add_segment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file (anything OpenCV reads)")
    p.add_argument("--point", action="append", type=parse_point, default=[], metavar="X,Y[:LABEL]",
                   help="a click in pixels; label 1 foreground (default), 0 background; repeatable")
    p.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="a box in pixels")
    p.add_argument("--model", default="sam2.1_hiera_tiny",
                   help="variant name (downloaded on first use), checkpoint .pt, or exported engines folder")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnxruntime", "torch"])
    p.add_argument("--device", default=None, help="torch device, e.g. cuda:0 (default: best available)")
    p.add_argument("--out", required=True, help="where to write the best mask (PNG, 0/255)")
    p.add_argument("--overlay", help="where to write the image with the mask and prompts drawn on it")
    p.add_argument("--multimask", action="store_true", help="ask for 3 candidate masks and keep the best-scoring one")
    p.add_argument("--json", action="store_true", help="print scores and paths as JSON on stdout")


def run_segment(args: argparse.Namespace) -> int:
    import cv2


    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"image {args.image!r} could not be read (missing file or not an image)")
    if not args.point and args.box is None:
        raise InputError("give at least one --point X,Y[:LABEL] or a --box X0,Y0,X1,Y1")
    model = SAM2.from_pretrained(args.model, backend=args.backend, device=args.device)
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
        cv2.imwrite(args.overlay, draw_overlay(bgr, mask, args.point, args.box))
    report = {"image": args.image, "mask": args.out, "overlay": args.overlay, "backend": model.active_backend,
              "scores": [float(s) for s in np.ravel(pred.scores)], "best": best, "mask_area": int(mask.sum())}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"mask {args.out}: area {report['mask_area']} px, score {report['scores'][best]:.3f} ({model.active_backend})",
              file=sys.stderr)
    return 0


def draw_overlay(bgr: np.ndarray, mask: np.ndarray, points=(), box=None) -> np.ndarray:
    """Image with the mask tinted and outlined, clicks as dots (green +, red -), the box in yellow."""
    import cv2

    out = bgr.copy()
    tint = np.array([255, 144, 30], np.float32)  # BGR dodger blue
    out[mask] = (0.45 * out[mask].astype(np.float32) + 0.55 * tint).astype(np.uint8)
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, (255, 255, 255), 2)
    r = max(4, round(min(bgr.shape[:2]) / 120))
    for x, y, label in points:
        color = (0, 200, 0) if label == 1 else (0, 0, 230)
        cv2.circle(out, (round(x), round(y)), r, color, -1)
        cv2.circle(out, (round(x), round(y)), r, (255, 255, 255), 1)
    if box is not None:
        cv2.rectangle(out, (round(box[0]), round(box[1])), (round(box[2]), round(box[3])), (0, 220, 255), 2)
    return out


def add_download_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="official variant, e.g. sam2.1_hiera_tiny or sam2/hiera_b_plus")
    p.add_argument("--cache-dir", default=None, help="default: $SAM2EDGE_CACHE or ~/.cache/sam2edge")


def run_download(args: argparse.Namespace) -> int:
    from sam2edge.model.checkpoint import download_checkpoint

    print(download_checkpoint(args.name, cache_dir=args.cache_dir))
    return 0
