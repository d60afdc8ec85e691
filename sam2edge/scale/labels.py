"""Batch labelling, one item at a time: what a Ray actor (or task) and the single-process path both run.

Jobs are JSON lines. An image job names the image and its prompts (several lines for one image are
merged)::

    {"image": "shelf/0001.jpg", "prompts": [{"points": [[120, 80]], "labels": [1]}, {"box": [10, 20, 200, 220]}]}
    {"image": "shelf/0002.jpg", "box": [5, 5, 90, 90], "category": "bottle"}     # one prompt inline

A video job names the video (file or folder of frames) and its objects, each with prompts on a frame::

    {"video": "clips/a.mp4", "objects": [{"id": 1, "frame": 0, "box": [30, 40, 90, 120]}]}

Results are plain JSON (COCO run-length encodings), so they travel through Ray's object store
cheaply and the driver writes every file: workers need to read the inputs, never to share the output
folder. Every write is checked: a mask the image writer refuses or a JSON file that cannot be written
raises InputError naming the file, and JSON lands whole (written beside, then renamed) or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam2edge.errors import InputError

DEFAULT_CATEGORY = "object"
IMAGE_KEY = "image"  # names: api - the JSONL field naming an image file (a job format, not a tensor)


@dataclass(frozen=True)
class ModelRequest:
    """How each worker loads its model (``AutoModel.from_pretrained`` arguments)."""

    model: str
    backend: str = "auto"
    device: str = "auto"
    store_dir: str | None = None
    threads: int | None = None
    strict: bool = False

    def load(self, video: bool = False) -> Any:
        from sam2edge import AutoModel

        return AutoModel.from_pretrained(self.model, backend=self.backend, device=self.device, store_dir=self.store_dir,
                                         threads=self.threads, strict=self.strict, video=video)


# -- jobs ----------------------------------------------------------------------------------------
def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """JSON objects, one per non-empty line; InputError naming the file and line of a bad one."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} cannot be read: {getattr(exc, 'strerror', None) or exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: each line must be a JSON object, got {type(row).__name__}")
        rows.append(row)
    if not rows:
        raise InputError(f"{path} has no jobs (no JSON lines)")
    return rows


def _check_prompt(prompt: Any, where: str) -> dict[str, Any]:
    if not isinstance(prompt, dict) or not ({"points", "box"} & set(prompt)):
        raise InputError(f"{where}: a prompt needs 'points' (with 'labels') and/or 'box', got {prompt!r}")
    points = np.asarray(prompt.get("points", []), np.float32).reshape(-1, 2) if "points" in prompt else None
    if points is not None:
        labels = prompt.get("labels", [1] * len(points))
        if len(labels) != len(points):
            raise InputError(f"{where}: {len(points)} points but {len(labels)} labels")
    if "box" in prompt and len(prompt["box"]) != 4:
        raise InputError(f"{where}: box must be [x0, y0, x1, y1], got {prompt['box']!r}")
    return {k: prompt[k] for k in ("points", "labels", "box", "category") if k in prompt}


def image_jobs(rows: Iterable[Mapping[str, Any]], root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Lines merged per image: [{"id", "path", "file_name", "prompts"}], ids 1.. in first-seen order."""
    jobs: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows, 1):
        name = row.get(IMAGE_KEY)
        if not isinstance(name, str):
            raise InputError(f"line {number}: {IMAGE_KEY!r} must name an image file, got {name!r}")
        prompts = row["prompts"] if "prompts" in row else [row]
        if not isinstance(prompts, list):
            raise InputError(f"line {number}: 'prompts' must be a list, got {type(prompts).__name__}")
        job = jobs.setdefault(name, {"id": len(jobs) + 1, "file_name": name,
                                     "path": str(Path(root) / name) if root else name, "prompts": []})
        job["prompts"] += [_check_prompt(p, f"line {number} ({name})") for p in prompts]
    return list(jobs.values())


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def folder_jobs(folder: str | os.PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[dict[str, Any]]:
    """Every image of a folder (recursively, sorted; hidden files skipped) as a job without prompts (automatic
    mask generation). InputError when ``folder`` is not a folder or holds no image."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{folder} is not a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in extensions and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not paths:
        raise InputError(f"{folder} holds no images ({', '.join(extensions)})")
    return [{"id": i, "file_name": str(p.relative_to(root)), "path": str(p), "prompts": []} for i, p in enumerate(paths, 1)]


# -- masks as COCO RLE ---------------------------------------------------------------------------
def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """A boolean [H, W] mask as COCO's compressed RLE: {"size": [H, W], "counts": str}."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: Mapping[str, Any]) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": list(rle["size"]), "counts": str(rle["counts"]).encode("ascii")}).astype(bool)


def mask_record(mask: np.ndarray, score: float) -> dict[str, Any]:
    """What an annotation keeps of one mask: RLE, area, XYWH box, score."""
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    bbox = [0.0, 0.0, 0.0, 0.0] if xs.size == 0 else [float(xs.min()), float(ys.min()),
                                                       float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    return {"segmentation": encode_rle(mask), "area": int(mask.sum()), "bbox": bbox, "score": float(score)}


# -- one image -----------------------------------------------------------------------------------
def read_image(path: str) -> np.ndarray:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"image {path!r} could not be read (missing file or not an image)")
    return bgr


def segment_job(model: Any, job: Mapping[str, Any], multimask: bool = False) -> dict[str, Any]:
    """One image job: the image encoded once, each prompt decoded on its embedding, the best mask kept."""
    bgr = read_image(job["path"])
    embedding = model.embed_images(bgr, use_embeddings_cache=False)[0]
    records = []
    for k, prompt in enumerate(job["prompts"]):
        points = np.asarray(prompt["points"], np.float32).reshape(-1, 2) if "points" in prompt else None
        labels = np.asarray(prompt.get("labels", [1] * len(points)), np.int32) if points is not None else None
        box = np.asarray(prompt["box"], np.float32) if "box" in prompt else None
        pred = model.segment_images(embeddings=embedding, point_coordinates=points, point_labels=labels, boxes=box,
                                    multi_mask_output=multimask)[0]
        best = int(np.argmax(pred.scores))
        records.append({**mask_record(pred.masks[best], float(np.ravel(pred.scores)[best])), "prompt": k,
                        "category": prompt.get("category", DEFAULT_CATEGORY)})
    return {"id": job["id"], "file_name": job["file_name"], "height": int(bgr.shape[0]), "width": int(bgr.shape[1]),
            "annotations": records}


def generate_job(model: Any, job: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One image through automatic mask generation (``model.generate_masks``, looked up by name)."""
    generate = getattr(model, "generate_masks", None)
    if generate is None:
        raise InputError("this sam2edge has no automatic mask generation (model.generate_masks); label with prompts")
    bgr = read_image(job["path"])
    records = []
    for k, found in enumerate(generate(bgr, **dict(options or {}))):
        seg = found["segmentation"]
        mask = decode_rle(seg) if isinstance(seg, Mapping) else np.asarray(seg, dtype=bool)
        records.append({**mask_record(mask, float(found.get("predicted_iou", 0.0))), "prompt": k,
                        "category": DEFAULT_CATEGORY, "stability_score": float(found.get("stability_score", 0.0))})
    return {"id": job["id"], "file_name": job["file_name"], "height": int(bgr.shape[0]), "width": int(bgr.shape[1]),
            "annotations": records}


# -- one video -----------------------------------------------------------------------------------
def video_jobs(rows: Iterable[Mapping[str, Any]], root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    jobs = []
    for number, row in enumerate(rows, 1):
        name, objects = row.get("video"), row.get("objects")
        if not isinstance(name, str) or not isinstance(objects, list) or not objects:
            raise InputError(f"line {number}: a video job needs 'video' (a path) and a non-empty 'objects' list")
        checked = []
        for obj in objects:
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), int) or not isinstance(obj.get("frame", 0), int):
                raise InputError(f"line {number} ({name}): each object needs an integer 'id' (and 'frame'), got {obj!r}")
            checked.append({"id": obj["id"], "frame": obj.get("frame", 0), **_check_prompt(obj, f"line {number} ({name})")})
        jobs.append({"id": number, "file_name": name, "video": str(Path(root) / name) if root else name, "objects": checked})
    return jobs


def track_job(model: Any, job: Mapping[str, Any], max_frames: int | None = None) -> dict[str, Any]:
    """One video job: every object's prompts added, tracked forward from the first prompted frame (and back to
    frame 0 when that is later); per object, one RLE per frame (None where never tracked)."""
    from sam2edge.runtime.video import track

    per_object: dict[int, dict[int, dict[str, Any]]] = {o["id"]: {} for o in job["objects"]}
    with track(model, job["video"]) as tracker:
        for obj in job["objects"]:
            points = np.asarray(obj["points"], np.float32).reshape(-1, 2) if "points" in obj else None
            labels = np.asarray(obj.get("labels", [1] * len(points)), np.int32) if points is not None else None
            tracker.add_points(obj["frame"], obj["id"], points, labels, box=obj.get("box"))
        start = min(o["frame"] for o in job["objects"])
        for reverse in [False] + ([True] if start > 0 else []):
            for result in tracker.propagate(start, reverse=reverse, max_frames=max_frames):
                for obj_id in per_object:
                    per_object[obj_id][result.frame_idx] = mask_record(result.mask_of(obj_id), 1.0)
        height, width = tracker.video_hw
    frames = max((i for masks in per_object.values() for i in masks), default=-1) + 1
    objects = [{"id": obj_id, "segmentations": [masks[i]["segmentation"] if i in masks else None for i in range(frames)],
                "areas": [masks[i]["area"] if i in masks else None for i in range(frames)],
                "bboxes": [masks[i]["bbox"] if i in masks else None for i in range(frames)]}
               for obj_id, masks in per_object.items()]
    return {"id": job["id"], "file_name": job["file_name"], "height": int(height), "width": int(width), "length": frames,
            "objects": objects}


# -- the outputs ---------------------------------------------------------------------------------
MaskSaver = Callable[[Path, np.ndarray], None]  # (path, uint8 0/255 mask) -> the file on disk, or InputError


def save_mask_png(path: Path, mask: np.ndarray) -> None:
    """cv2.imwrite, checked: it returns False (or raises) instead of failing loudly."""
    try:
        ok = cv2.imwrite(str(path), mask)
    except cv2.error as exc:
        raise InputError(f"mask {path} cannot be written: {str(exc).strip().splitlines()[-1]}") from None
    if not ok or not path.is_file():
        raise InputError(f"mask {path} cannot be written (the image writer failed)")


def write_json(path: str | os.PathLike, document: Any) -> Path:
    """``document`` as JSON at ``path``, whole or not at all (written beside, then renamed); InputError if it cannot be."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(document) + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # under a file, the temporary name cannot even be looked up
            tmp.unlink(missing_ok=True)
        raise InputError(f"{target} cannot be written: {exc.strerror or exc}") from None
    return target


@dataclass
class CocoWriter:
    """Collects image results; writes ``<out>/masks/<image id>_<k>.png`` (0/255) and ``<out>/annotations.json``.
    ``save_mask`` writes one mask file (the CLI passes its own checked writer, whose errors name --out)."""

    out: Path
    write_masks: bool = True
    save_mask: MaskSaver = save_mask_png
    images: list[dict[str, Any]] = field(default_factory=list)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    categories: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, result: Mapping[str, Any]) -> None:
        if "error" in result:  # the job failed on its worker (unreadable image, bad prompt): listed, not labelled
            self.errors.append({k: result[k] for k in ("id", "file_name", "error")})
            return
        self.images.append({k: result[k] for k in ("id", "file_name", "height", "width")})
        for rec in result["annotations"]:
            category = self.categories.setdefault(rec["category"], len(self.categories) + 1)
            ann = {"id": 0, "image_id": result["id"], "category_id": category, "iscrowd": 0,
                   **{k: v for k, v in rec.items() if k != "category"}}
            if self.write_masks:
                name = f"{int(result['id']):06d}_{int(rec['prompt']):03d}.png"
                path = self.out / "masks" / name
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise InputError(f"{path.parent} cannot be created: {exc.strerror or exc}") from None
                self.save_mask(path, decode_rle(rec["segmentation"]).astype(np.uint8) * 255)
                ann["mask_file"] = f"masks/{name}"
            self.annotations.append(ann)

    def document(self) -> dict[str, Any]:
        images = sorted(self.images, key=lambda i: i["id"])
        anns = sorted(self.annotations, key=lambda a: (a["image_id"], a["prompt"]))
        for i, ann in enumerate(anns, 1):
            ann["id"] = i
        cats = [{"id": i, "name": n} for n, i in sorted(self.categories.items(), key=lambda kv: kv[1])]
        doc = {"info": {"description": "sam2edge label"}, "images": images, "annotations": anns, "categories": cats}
        return doc | ({"errors": sorted(self.errors, key=lambda e: e["id"])} if self.errors else {})

    def write(self, name: str = "annotations.json") -> Path:
        return write_json(self.out / name, self.document())


def videos_document(results: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Video results in the YouTube-VIS layout: videos, and one annotation per object with per-frame RLEs."""
    results = sorted(results, key=lambda r: r["id"])
    videos = [{k: r[k] for k in ("id", "file_name", "height", "width", "length")} for r in results]
    anns = [{"video_id": r["id"], "object_id": o["id"], "category_id": 1, "iscrowd": 0, **{k: o[k] for k in
            ("segmentations", "areas", "bboxes")}} for r in results for o in r["objects"]]
    for i, ann in enumerate(anns, 1):
        ann["id"] = i
    return {"info": {"description": "sam2edge label videos"}, "videos": videos, "annotations": anns,
            "categories": [{"id": 1, "name": DEFAULT_CATEGORY}]}
