"""``sam2edge everything IMAGE --out masks/ [--labels] [--overlay o.png] [--json masks.json [--rle]]``

Segments everything in an image (the official automatic mask generator's options and defaults)
and writes one PNG per mask (0/255, the image's size) as <out>/mask_000.png, ..., or with
--labels one 16-bit label image <out>/labels.png (mask i has label i+1; smaller masks are drawn
over larger ones); optionally an overlay with every mask in its own colour, and COCO-style JSON
(boxes XYWH, scores, the point that made each mask, the mask file; with --rle each mask as COCO
compressed RLE). Progress goes to stderr.

    sam2edge everything photo.jpg --out masks/ --overlay overlay.png --json masks.json --rle
    sam2edge everything photo.jpg --out labels/ --labels --points-per-side 16 --crop-n-layers 1

Every option and every output path is checked before the model runs.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam2edge.cli.common import Progress, add_model_options, load_model
from sam2edge.cli.outputs import check_file_target, check_folder_target, check_image_path, check_mask_path, write_image
from sam2edge.cli.overlay import draw_overlay
from sam2edge.errors import InputError
from sam2edge.processing.amg import mask_to_rle, rle_to_coco
from sam2edge.runtime.image.automatic_options import AutomaticMaskOptions

LABELS_FILE = "labels.png"
MAX_LABELS = 65535  # a 16-bit label image

# CLI flag -> generate_masks option (the official generator's names), with the type argparse parses.
OPTIONS: dict[str, tuple[type, str]] = {
    "points_per_side": (int, "grid points per image side (default 32)"),
    "points_per_batch": (int, "prompts per decoder call (default 64)"),
    "pred_iou_thresh": (float, "keep masks whose predicted IoU is above this (default 0.8)"),
    "stability_score_thresh": (float, "keep masks at least this stable (default 0.95)"),
    "box_nms_thresh": (float, "box IoU above which duplicates are dropped (default 0.7)"),
    "crop_n_layers": (int, "also run on 2^i x 2^i crops, i = 1..N (default 0)"),
    "crop_n_points_downscale_factor": (int, "fewer points per crop layer (default 1)"),
    "min_mask_region_area": (float, "remove holes and islands up to this area (default 0)"),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="image file (anything OpenCV reads)")
    p.add_argument("--out", required=True, help=f"folder for the masks: mask_000.png ... (0/255), or {LABELS_FILE} with --labels")
    p.add_argument("--labels", action="store_true",
                   help="write one 16-bit label image (mask i has label i+1; smaller masks drawn over larger) "
                        "instead of one PNG per mask")
    p.add_argument("--overlay", help="where to write the image with every mask in its own colour")
    p.add_argument("--json", help="where to write COCO-style JSON (boxes, scores, points; mask files or RLE)")
    p.add_argument("--rle", action="store_true", help="put each mask into the JSON as COCO compressed RLE")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    g = p.add_argument_group("generator options (the official SAM2AutomaticMaskGenerator's)")
    for name, (kind, help_text) in OPTIONS.items():
        g.add_argument("--" + name.replace("_", "-"), type=kind, default=None, help=help_text)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    options = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    AutomaticMaskOptions.from_kwargs(**options)  # bad options are refused before anything else
    if args.rle and not args.json:
        raise InputError("--rle puts the masks into the JSON: give --json PATH too")
    bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"image {args.image!r} could not be read (missing file or not an image)")
    out = check_folder_target(args.out, "--out")
    if args.labels:
        check_mask_path(out / LABELS_FILE, "--out", (args.image,))
    if args.overlay:
        check_image_path(args.overlay, "--overlay", (args.image,))
    if args.json:
        check_file_target(args.json, "--json", (args.image,))
    model = load_model(args)
    started = time.perf_counter()
    bar = _ProgressBar(enabled=not args.quiet)
    records = model.generate_masks(bgr, progress=bar, **options)
    bar.close()
    files = write_masks(records, out, bgr.shape[:2], args.labels, (args.image,))
    if args.overlay:
        write_image(args.overlay, draw_masks(bgr, records), "--overlay")
    if args.json:
        write_json(args.json, coco_json(records, args.image, bgr.shape[:2], files, args.rle))
    print(f"{len(records)} masks in {time.perf_counter() - started:.1f} s ({model.active_backend}) -> {out}", file=sys.stderr)
    return 0


class _ProgressBar:
    """generate_masks' ``progress(points_done, points_total)`` -> the CLI's progress bar."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = Progress(total, "segment everything", unit="points")
        self.bar.update(done - self.bar.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def write_masks(records: list[dict], out: Path, image_hw: tuple[int, ...], labels: bool,
                inputs: tuple[str, ...] = ()) -> list[str]:
    """One PNG per mask (0/255) -> their file names, or one 16-bit label image -> [LABELS_FILE] per mask."""
    if labels:
        if len(records) > MAX_LABELS:
            raise InputError(f"--labels holds at most {MAX_LABELS} masks, got {len(records)}; write one PNG per mask instead")
        image = np.zeros(image_hw[:2], np.uint16)
        for i in sorted(range(len(records)), key=lambda k: -records[k]["area"]):  # small masks stay visible
            image[records[i]["segmentation"]] = i + 1
        write_image(out / LABELS_FILE, image, "--out")
        return [LABELS_FILE] * len(records)
    names = [f"mask_{i:03d}.png" for i in range(len(records))]
    for name in names:
        check_mask_path(out / name, "--out", inputs)
    for name, r in zip(names, records):
        write_image(out / name, r["segmentation"].astype(np.uint8) * 255, "--out")
    return names


def colours(n: int) -> list[tuple[int, int, int]]:
    """n distinct BGR colours (hues spread by the golden ratio, so neighbours in the list differ)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 1.0)
        out.append((int(255 * b), int(255 * g), int(255 * r)))
    return out


def draw_masks(bgr: np.ndarray, records: list[dict]) -> np.ndarray:
    """The image with each mask tinted in its own colour and outlined, larger masks first."""
    order = sorted(range(len(records)), key=lambda k: -records[k]["area"])
    palette = colours(len(records))
    return draw_overlay(bgr, [records[k]["segmentation"] for k in order], colours=[palette[k] for k in order])


def coco_json(records: list[dict], image_path: str, image_hw: tuple[int, ...], files: list[str], rle: bool) -> dict:
    """COCO-style JSON: one image, one category, an annotation per mask (with the generator's scores)."""
    anns = []
    for i, (r, name) in enumerate(zip(records, files)):
        ann: dict[str, Any] = {
            "id": i + 1, "image_id": 1, "category_id": 1, "area": r["area"], "bbox": r["bbox"],
            "predicted_iou": r["predicted_iou"], "stability_score": r["stability_score"],
            "point_coords": r["point_coords"], "crop_box": r["crop_box"], "mask_file": name}
        if name == LABELS_FILE:
            ann["label"] = i + 1
        if rle:
            ann["segmentation"] = rle_to_coco(mask_to_rle(r["segmentation"]))
        anns.append(ann)
    height, width = image_hw[:2]
    return {"images": [{"id": 1, "file_name": str(image_path), "height": int(height), "width": int(width)}],
            "categories": [{"id": 1, "name": "object"}], "annotations": anns}


def write_json(path: str, doc: dict) -> None:
    try:
        Path(path).write_text(json.dumps(doc))
    except OSError as exc:
        raise InputError(f"--json {path} cannot be written: {exc.strerror}") from None
