"""The inputs of the EdgeTAM oracle tests, made once, and the oracle tasks that consume them.

Memory inputs are random at realistic scale: unit-variance features, blob-shaped mask logits
kept away from 0 where they are binarised (so a 1e-6 difference cannot flip a pixel), memory
latents rounded to bfloat16 as the official tracker stores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.oracle import preprocess_exact, test_images

ENCODE_IMAGE = "astronaut"
PREDICT_IMAGE = "coffee"
ATTENTION_CASES = ((1, 0), (7, 64))  # (memory frames F, pointer tokens K)
PATH_FROM_POINTS = (True, False, False)  # memory path: 3 frames, the first prompted
PATH_TPOS_ROWS = (6, 0, 1)  # conditioning frame, then the previous two frames
PATH_POINTERS = 3
VIDEO_FRAMES, VIDEO_HEIGHT, VIDEO_WIDTH = 3, 96, 128  # CI time: every frame runs the encoder on both sides


@dataclass
class Cases:
    tasks: list[dict] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    predict: list[dict] = field(default_factory=list)  # prompt kwargs of SAM2ImagePredictor.predict
    video_frames: list[np.ndarray] = field(default_factory=list)  # the clip as PIL decodes its JPEG files
    video_steps: list = field(default_factory=list)  # tests/video/scenario.py verbs

    def add(self, task: dict, **arrays: np.ndarray) -> None:
        self.tasks.append(task)
        self.arrays |= {f"{task['id']}/{k}": np.ascontiguousarray(v) for k, v in arrays.items()}

    def inputs(self, task_id: str) -> dict[str, np.ndarray]:
        prefix = f"{task_id}/"
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}


def blob_logits(rng: np.random.Generator, n: int, side: int = 1024, level: float = 6.0) -> np.ndarray:
    """[n,1,side,side] +-level on a 16x16 grid of blocks, plus small noise that never crosses 0."""
    coarse = np.where(rng.standard_normal((n, 1, 16, 16)) > 0, level, -level).astype(np.float32)
    rep = side // 16
    noise = rng.uniform(-level / 2, level / 2, size=(n, 1, side, side)).astype(np.float32)
    return np.repeat(np.repeat(coarse, rep, axis=2), rep, axis=3) + noise


def bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 precision (nearest even), as the official memory bank stores memory."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def _prompts(image: np.ndarray, rng: np.random.Generator) -> list[dict]:
    h, w = image.shape[:2]
    pts = np.stack([rng.uniform(0, w, 3), rng.uniform(0, h, 3)], axis=1).astype(np.float32)
    x0, y0 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
    box = np.array([x0, y0, x0 + rng.uniform(40, w / 2), y0 + rng.uniform(40, h / 2)], dtype=np.float32)
    mask = (rng.standard_normal((1, 256, 256)) * 4).astype(np.float32)
    return [
        {"point_coords": pts[:1], "point_labels": np.array([1], np.int32), "multimask": True},
        {"point_coords": pts[:2], "point_labels": np.array([1, 0], np.int32), "multimask": False},
        {"box": box, "multimask": False},
        {"box": box, "point_coords": pts[2:], "point_labels": np.array([1], np.int32), "multimask": True},
        {"point_coords": pts[:1], "point_labels": np.array([1], np.int32), "mask_input": mask, "multimask": False},
    ]


def video_steps(clip) -> list:
    """One object (the official EdgeTAM predictor batches objects through a perceiver that takes batch 1
    only, facebookresearch/EdgeTAM#15): a click, a negative re-click on the same frame (the previous
    mask fed back), then forward propagation over the clip."""
    x, y = clip.center(1, 0)
    return [
        ("points", {"frame": 0, "obj_id": 1, "points": [[x, y]], "labels": [1]}),
        ("points", {"frame": 0, "obj_id": 1, "points": [[x + 14, y]], "labels": [0], "clear_old_points": False}),
        ("propagate", {}),
    ]


def make_cases(folder: Path, seed: int = 0) -> Cases:
    """All inputs; the video clip is written to ``folder`` as JPEG files (both sides read them)."""
    from tests.video.clip import make_clip, write_jpeg_folder

    rng = np.random.default_rng(seed)
    cases = Cases()
    cases.add({"id": "encode", "kind": "encode"}, image=preprocess_exact(test_images()[ENCODE_IMAGE]).numpy())

    for task_id, from_points, score in (("mem_soft", False, 1.5), ("mem_points", True, -0.5)):
        cases.add({"id": task_id, "kind": "memory_encode", "is_mask_from_pts": from_points},
                  vision_features=rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
                  high_res_masks=blob_logits(rng, 1), object_score_logits=np.array([[score]], np.float32))

    for f, k in ATTENTION_CASES:
        cases.add({"id": f"attn_F{f}_K{k}", "kind": "memory_attention", "num_obj_ptr_tokens": k, "num_spatial_mem": f},
                  curr=rng.standard_normal((4096, 1, 256)).astype(np.float32),
                  memory=np.concatenate([bf16(rng.standard_normal((f * 512, 1, 64)).astype(np.float32)),
                                         rng.standard_normal((k, 1, 64)).astype(np.float32)]),
                  tpos_rows=np.array([(6 if i == 0 else i - 1) for i in range(f)], np.int64))

    n = len(PATH_TPOS_ROWS)
    cases.add({"id": "path", "kind": "memory_path", "from_points": list(PATH_FROM_POINTS), "tpos_rows": list(PATH_TPOS_ROWS)},
              memory_vision_features=rng.standard_normal((n, 256, 64, 64)).astype(np.float32),
              memory_masks=blob_logits(rng, n), memory_scores=np.array([[2.0], [1.0], [3.0]], np.float32),
              curr=rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
              obj_ptrs=rng.standard_normal((PATH_POINTERS, 256)).astype(np.float32))

    image = test_images()[PREDICT_IMAGE]
    cases.predict = _prompts(image, rng)
    arrays = {f"c{i}/{k}": v for i, c in enumerate(cases.predict) for k, v in c.items() if k != "multimask"}
    cases.add({"id": "predict", "kind": "predict", "cases": [{"multimask": c["multimask"]} for c in cases.predict]},
              image=image, **arrays)

    clip = make_clip(VIDEO_FRAMES, VIDEO_HEIGHT, VIDEO_WIDTH)
    cases.video_frames = write_jpeg_folder(clip.frames, folder)
    cases.video_steps = video_steps(clip)
    cases.tasks.append({"id": "video", "kind": "video", "folder": str(folder), "steps": cases.video_steps})
    return cases
