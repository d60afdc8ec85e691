"""``sam2edge label --prompts jobs.jsonl | --folder DIR | --videos videos.jsonl --out labels/``

Batch labelling on Ray: one model per actor (``--actors``; ``--gpus-per-actor`` on a GPU cluster),
images through a Ray Data actor pool, videos one per Ray task. Writes ``<out>/annotations.json``
(COCO, RLE masks) and ``<out>/masks/*.png`` for images, ``<out>/videos.json`` (YouTube-VIS layout,
RLE per frame) for videos.

    sam2edge label --prompts jobs.jsonl --out labels/ --actors 4
    sam2edge label --folder shelf/ --out labels/ --actors 8 --gpus-per-actor 0.5 --address auto
    sam2edge label --videos videos.jsonl --out labels/ --actors 2 --address ray://head:10001

A prompts line: {"image": "a.jpg", "prompts": [{"points": [[x, y]], "labels": [1]}, {"box": [x0, y0, x1, y1]}]};
a videos line: {"video": "clip.mp4", "objects": [{"id": 1, "frame": 0, "box": [x0, y0, x1, y1]}]}. Relative
paths are read from --root (default: the JSONL file's folder). Without --address a local cluster starts.
Every output is checked before a model loads (--out writable, the JSON and masks/ creatable, no input
overwritten) and again when written; a failure is one line naming --out, exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from sam2edge.cli.common import Progress, add_model_options, non_negative_int, positive_int
from sam2edge.cli.outputs import check_file_target, check_folder_target, write_image
from sam2edge.errors import InputError
from sam2edge.runtime.image.predictor import SAM2
from sam2edge.scale.labels import (
    CocoWriter,
    ModelRequest,
    folder_jobs,
    image_jobs,
    read_jsonl,
    video_jobs,
    videos_document,
    write_json,
)
from sam2edge.scale.ray_label import Cluster, Workers, label_images, label_images_local, track_videos, track_videos_local


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--prompts", metavar="JSONL", help="image jobs: one line per image with its prompts")
    what.add_argument("--folder", metavar="DIR", help="every image of a folder through automatic mask generation")
    what.add_argument("--videos", metavar="JSONL", help="video jobs: one line per video with its objects' prompts")
    p.add_argument("--root", help="folder relative image/video paths are read from (default: the JSONL's folder)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--multimask", action="store_true", help="decode 3 candidate masks per prompt, keep the best")
    p.add_argument("--no-masks", dest="masks", action="store_false", help="write the JSON only, no mask PNGs")
    p.add_argument("--max-frames", type=non_negative_int, default=None, help="videos: track at most this many frames each way")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads per model (ONNX Runtime; default: per actor CPUs)")
    ray = p.add_argument_group("ray")
    ray.add_argument("--actors", type=positive_int, default=1, help="models running at once (actors, or video tasks)")
    ray.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs Ray reserves per model (default 1)")
    ray.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per model, e.g. 1 or 0.5 (default 0)")
    ray.add_argument("--address", default=None, help="an existing cluster (auto, or ray://head:10001); default: start one here")
    ray.add_argument("--num-cpus", type=positive_int, default=None, help="local cluster: CPUs it may use (default all)")
    ray.add_argument("--object-store-mb", type=positive_int, default=None, help="local cluster: object store size")
    ray.add_argument("--local", action="store_true", help="no Ray: one model in this process (the reference path)")
    p.add_argument("--json", action="store_true", help="print a summary as JSON on stdout")
    add_model_options(p)


JSON_NAMES = {"images": "annotations.json", "videos": "videos.json"}


def check_outputs(args: argparse.Namespace) -> Path:
    """--out and the files the run will write, checked before any model loads; the JSON file's path."""
    out = check_folder_target(args.out, "--out")
    inputs = tuple(p for p in (args.prompts, args.videos) if p)
    path = check_file_target(out / JSON_NAMES["videos" if args.videos else "images"], "--out", inputs)
    if args.masks and not args.videos:
        check_folder_target(out / "masks", "--out")
    return path


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    threads = args.threads or (max(1, int(args.cpus_per_actor)) if not args.local else None)
    request = ModelRequest(args.model, args.backend, args.device, args.store, threads,
                           strict=args.backend != "auto" and not args.fallback)
    workers = Workers(args.actors, args.cpus_per_actor, args.gpus_per_actor)
    cluster = Cluster(args.address, args.num_cpus, args.object_store_mb)
    source = args.prompts or args.videos
    root = args.root or (str(Path(source).parent) if source else None)
    if args.videos:
        jobs = video_jobs(read_jsonl(args.videos), root)
    else:
        jobs = image_jobs(read_jsonl(args.prompts), root) if args.prompts else folder_jobs(args.folder)
    if args.folder and not hasattr(SAM2, "generate_masks"):  # before a cluster starts and every image fails alike
        raise InputError("--folder needs automatic mask generation (SAM2.generate_masks), which this sam2edge lacks; "
                         "label with --prompts")
    json_path = check_outputs(args)
    if args.videos:
        summary = _videos(args, jobs, request, workers, cluster, json_path)
    else:
        summary = _images(args, jobs, request, workers, cluster, json_path)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if args.json:
        print(json.dumps(summary))
    else:
        print(", ".join(f"{k} {v}" for k, v in summary.items()), file=sys.stderr)
    return 1 if summary.get("failed") else 0


def _videos(args: argparse.Namespace, jobs: list, request: ModelRequest, workers: Workers, cluster: Cluster,
            json_path: Path) -> dict:
    bar = Progress(len(jobs), "tracking", unit="videos")
    if args.local:
        results = track_videos_local(jobs, request, args.max_frames, lambda d, t: bar.update())
    else:
        results = track_videos(jobs, request, workers, cluster, args.max_frames, lambda d, t: bar.update())
    bar.close()
    path = write_json(json_path, videos_document(results))
    return {"videos": len(results), "frames": sum(r["length"] for r in results), "json": str(path)}


def _images(args: argparse.Namespace, jobs: list, request: ModelRequest, workers: Workers, cluster: Cluster,
            json_path: Path) -> dict:
    mode = "prompts" if args.prompts else "generate"
    options = {"multimask": args.multimask}
    bar = Progress(len(jobs), "labelling", unit="images")
    if args.local:
        results = label_images_local(jobs, request, mode, options, lambda d, t: bar.update())
    else:
        results = label_images(jobs, request, workers, cluster, mode, options, lambda d, t: bar.update())
    bar.close()
    writer = CocoWriter(json_path.parent, write_masks=args.masks, save_mask=lambda p, m: write_image(p, m, "--out"))
    for result in results:
        writer.add(result)
    path = writer.write(json_path.name)
    return {"images": len(writer.images), "annotations": len(writer.annotations), "failed": len(writer.errors),
            "json": str(path)}
