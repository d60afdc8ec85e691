"""``sam2edge track VIDEO --box X0,Y0,X1,Y1 | --point X,Y[:LABEL] --out masks/ [--overlay o.mp4]``

Follows one object through a video; writes per-frame masks and a watchable overlay.

    sam2edge track clip.mp4 --box 120,80,360,300 --out masks/ --overlay tracked.mp4
    sam2edge track frames/ --point 200,150 --point 260,180:0 --frame 30 --obj 2 --out masks/

Masks are written as ``<out>/<frame:05d>.png`` (0 / 255, the video's size). With a prompt on
a later frame the object is tracked forward to the end, then backward to frame 0. The overlay
is written afterwards in frame order, reading the video and the masks again (nothing is held).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam2edge.cli.common import Progress, add_model_options, load_model, parse_box, parse_point
from sam2edge.cli.overlay import draw_overlay
from sam2edge.errors import InputError
from sam2edge.runtime.video import track
from sam2edge.runtime.video.frames import EndOfVideo, open_source


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file (anything OpenCV reads) or a folder of frames")
    p.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="a box around the object, in pixels")
    p.add_argument("--point", action="append", type=parse_point, default=[], metavar="X,Y[:LABEL]",
                   help="a click in pixels; label 1 on the object (default), 0 background; repeatable")
    p.add_argument("--obj", type=int, default=1, help="object id of these prompts (default 1)")
    p.add_argument("--frame", type=int, default=0, help="frame the prompts are on (default 0)")
    p.add_argument("--out", required=True, help="folder for the per-frame masks (<frame>.png)")
    p.add_argument("--overlay", help="write a video with the mask drawn on the frames (e.g. out.mp4)")
    p.add_argument("--max-frames", type=int, default=None, help="track at most this many frames each way")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    _check_prompts(args)
    return track_with(load_model(args, video=True), args)


def _check_prompts(args: argparse.Namespace) -> None:
    if not args.point and args.box is None:
        raise InputError("give a --box X0,Y0,X1,Y1 and/or at least one --point X,Y[:LABEL]")
    if args.frame < 0:
        raise InputError(f"--frame must be >= 0, got {args.frame}")


def track_with(model: Any, args: argparse.Namespace) -> int:
    """The command with an already loaded predictor (``.runners`` with all four artifacts, ``.config``)."""
    _check_prompts(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tracker = track(model, args.video)
    with tracker:
        coords = [p[:2] for p in args.point] or None
        labels = [p[2] for p in args.point] or None
        tracker.add_points(args.frame, args.obj, coords, labels, box=args.box)
        total = tracker.num_frames
        bar = Progress(total, "tracking")
        passes = [False] + ([True] if args.frame > 0 else [])
        areas: dict[int, int] = {}
        for reverse in passes:
            for result in tracker.propagate(args.frame, reverse=reverse, max_frames=args.max_frames):
                mask = result.mask_of(args.obj)
                cv2.imwrite(str(out / f"{result.frame_idx:05d}.png"), mask.astype(np.uint8) * 255)
                if result.frame_idx not in areas:
                    bar.update()
                areas[result.frame_idx] = int(mask.sum())
        bar.close()
        backend = tracker.nets.backend
    overlay = write_overlay(args, out) if args.overlay else None
    report = {"video": args.video, "frames": len(areas), "masks": str(out), "overlay": overlay, "backend": backend,
              "seconds": round(time.perf_counter() - started, 2),
              "empty_frames": sum(1 for a in areas.values() if a == 0)}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"tracked object {args.obj} on {report['frames']} frames in {report['seconds']} s ({backend}); "
              f"masks in {out}" + (f", overlay {overlay}" if overlay else ""), file=sys.stderr)
    return 0


def write_overlay(args: argparse.Namespace, masks_dir: Path) -> str:
    """Frames with the mask tinted and outlined (and the prompts on their frame) -> a video file."""
    source = open_source(args.video)
    writer = None
    bar = Progress(source.num_frames, "overlay")
    idx = 0
    try:
        while source.num_frames is None or idx < source.num_frames:
            try:
                rgb = source.read(idx)
            except EndOfVideo:  # a video whose frame count was over-estimated
                break
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            if writer is None:
                writer = _open_writer(args.overlay, bgr.shape[1], bgr.shape[0], source.fps or 30.0)
            mask_path = masks_dir / f"{idx:05d}.png"
            mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) if mask_path.is_file() else None
            writer.write(draw_frame(bgr, None if mask is None else mask > 127,
                                    args if idx == args.frame else None))
            bar.update()
            idx += 1
    finally:
        bar.close()
        source.close()
        if writer is not None:
            writer.release()
    return str(args.overlay)


def _open_writer(path: str, width: int, height: int, fps: float) -> Any:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    codec = "MJPG" if path.lower().endswith(".avi") else "mp4v"
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise InputError(f"cannot write the overlay video {path!r} (codec {codec}); try a .avi path")
    return writer


def draw_frame(bgr: np.ndarray, mask: np.ndarray | None, prompts: argparse.Namespace | None) -> np.ndarray:
    """The frame with the object's mask (the shared overlay drawer) and, on the prompted frame, its prompts."""
    masks = [] if mask is None else [mask]
    points = prompts.point if prompts is not None else ()
    boxes = [prompts.box] if prompts is not None else ()
    return draw_overlay(bgr, masks, points, boxes)
