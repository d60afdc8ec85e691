"""``sam2edge track VIDEO [--obj ID] [--frame N] --box X0,Y0,X1,Y1 | --point X,Y[:LABEL] --out masks/ [--overlay o.mp4]``

Follows objects through a video; writes per-frame masks and a video that plays in a browser.

    sam2edge track clip.mp4 --box 120,80,360,300 --out masks/ --overlay tracked.mp4
    sam2edge track frames/ --obj 2 --frame 30 --point 200,150 --point 260,180:0 --out masks/
    sam2edge track clip.mp4 --obj 1 --box 120,80,360,300 --obj 2 --frame 40 --point 500,220 --out masks/

One object: masks are written as ``<out>/<frame:05d>.png`` (0 / 255, the video's size). Several
objects (each object's prompts after its --obj ID, each on its own --frame): ``<out>/<ID>/<frame:05d>.png``.
Objects are tracked forward from the earliest prompted frame to the end, then backward from the
latest one to frame 0. The overlay (.mp4: H.264, .webm: VP9) is written afterwards in frame
order, reading the video and the masks again (nothing is held). A damaged video stops with the
frame it could not read; the summary warns about objects whose mask is empty on every frame.
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

from sam2edge.cli.common import (
    ObjectPrompt,
    Progress,
    add_model_options,
    add_object_options,
    load_model,
    non_negative_int,
    object_prompts,
)
from sam2edge.cli.outputs import VideoWriter, check_folder_target, check_video_path, write_image
from sam2edge.cli.overlay import draw_overlay
from sam2edge.runtime.video import track
from sam2edge.runtime.video.frames import EndOfVideo, open_source


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file (PyAV or OpenCV reads it) or a folder of frames")
    add_object_options(p, frame=True)
    p.add_argument("--out", required=True, help="folder for the per-frame masks (<frame>.png; <ID>/<frame>.png for several objects)")
    p.add_argument("--overlay", help="write a video with the masks drawn on the frames: .mp4 (H.264) or .webm (VP9)")
    p.add_argument("--max-frames", type=non_negative_int, default=None, help="track at most this many frames each way")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    object_prompts(args)  # usage mistakes before the model loads
    return track_with(load_model(args, video=True), args)


def mask_folders(out: Path, objects: list[ObjectPrompt]) -> dict[int, Path]:
    return {o.obj: out if len(objects) == 1 else out / str(o.obj) for o in objects}


def track_with(model: Any, args: argparse.Namespace) -> int:
    """The command with an already loaded predictor (``.runners`` with all four artifacts, ``.config``)."""
    objects = object_prompts(args)
    folders = {obj: check_folder_target(f, "--out") for obj, f in mask_folders(Path(args.out), objects).items()}
    if args.overlay:
        check_video_path(args.overlay)
    started = time.perf_counter()
    tracker = track(model, args.video)
    with tracker:
        for o in objects:
            coords = [p[:2] for p in o.points] or None
            labels = [p[2] for p in o.points] or None
            tracker.add_points(o.frame, o.obj, coords, labels, box=o.box)
        areas: dict[int, dict[int, int]] = {o.obj: {} for o in objects}
        bar = Progress(tracker.num_frames, "tracking")
        first, last = min(o.frame for o in objects), max(o.frame for o in objects)
        for start, reverse in [(first, False)] + ([(last, True)] if last > 0 else []):
            for result in tracker.propagate(start, reverse=reverse, max_frames=args.max_frames):
                new = result.frame_idx not in areas[objects[0].obj]
                for o in objects:
                    mask = result.mask_of(o.obj)
                    write_image(folders[o.obj] / f"{result.frame_idx:05d}.png", mask.astype(np.uint8) * 255, "--out")
                    areas[o.obj][result.frame_idx] = int(mask.sum())
                if new:
                    bar.update()
        bar.close()
        backend = tracker.nets.backend
        video_hw = tracker.video_hw
    overlay = write_overlay(args, objects, folders) if args.overlay else None
    frames = len(areas[objects[0].obj])
    per_object = [{"obj": o.obj, "frame": o.frame, "masks": str(folders[o.obj]),
                   "empty_frames": sum(1 for a in areas[o.obj].values() if a == 0)} for o in objects]
    report = {"video": args.video, "frames": frames, "masks": str(args.out), "overlay": overlay, "backend": backend,
              "seconds": round(time.perf_counter() - started, 2), "objects": per_object,
              "empty_frames": per_object[0]["empty_frames"] if len(objects) == 1 else None}
    for o in per_object:
        if frames and o["empty_frames"] == frames:
            print(f"sam2edge track: warning: object {o['obj']}'s mask is empty on every frame: check its prompts on frame "
                  f"{o['frame']} (pixels of the {video_hw[1]}x{video_hw[0]} video)", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        names = ", ".join(str(o.obj) for o in objects)
        print(f"tracked object{'s' if len(objects) > 1 else ''} {names} on {frames} frames in {report['seconds']} s "
              f"({backend}); masks in {args.out}" + (f", overlay {overlay}" if overlay else ""), file=sys.stderr)
    return 0


def write_overlay(args: argparse.Namespace, objects: list[ObjectPrompt], folders: dict[int, Path]) -> str:
    """Frames with every mask tinted and outlined (and the prompts on their frames) -> a video file."""
    source = open_source(args.video)
    writer = None
    bar = Progress(source.num_frames, "overlay")
    idx = 0
    try:
        while source.num_frames is None or idx < source.num_frames:
            try:
                rgb = source.read(idx)
            except EndOfVideo:  # a video of unknown length ended
                break
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            if writer is None:
                writer = VideoWriter(args.overlay, bgr.shape[1], bgr.shape[0], source.fps or 30.0)
            masks = []
            for o in objects:
                path = folders[o.obj] / f"{idx:05d}.png"
                mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
                masks.append(np.zeros(bgr.shape[:2], bool) if mask is None else mask > 127)
            prompted = [o for o in objects if o.frame == idx]
            writer.write(draw_overlay(bgr, masks, [p for o in prompted for p in o.points], [o.box for o in prompted]))
            bar.update()
            idx += 1
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        bar.close()
        source.close()
    return str(args.overlay)
