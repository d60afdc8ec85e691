"""EdgeTAM vs SAM2.1-tiny on our ONNX Runtime path (CPU, fp32): encoder, click, memory attention, tracking.

Both models from random-weight checkpoints (``write_random_checkpoint``; EdgeTAM's BatchNorm
statistics calibrated), exported by ``sam2edge export`` into ``--store`` (reused when the store
already holds an export of the same checkpoint file), run by ONNX Runtime with ``--threads``.
Timings are wall-clock medians of ``--repeats`` runs, interleaved: every repetition runs every
measurement of one model, then the other. Measured:

* encoder: ``image_encoder`` on one 1024x1024 image;
* click: ``prompt_decoder``, one point on a cached embedding;
* memory attention, one object, 16 object pointers, 1 and 7 memory frames (what the tracker feeds
  it at the start and in steady state); plus the matmul GFLOP of each call, counted from the shapes
  (why EdgeTAM's is cheaper: 2 layers instead of 4, and a memory frame is 512 perceiver latents
  instead of 4096 tokens, so the cross-attention keys shrink 8x);
* tracking: ms per tracked frame (the whole propagation, encoder included) of a synthetic
  96x128 clip with 1 and 4 objects clicked on frame 0, and the frames per second that makes.

    nice -n 15 python benchmarks/edgetam_cpu.py --repeats 3 --store /tmp/sam2edge-edgetam-bench

Writes benchmarks/results/edgetam_cpu.json and .md, with the load average before and after (the
machine this ran on may be shared: say so when quoting the figures).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, like the other benchmarks

from benchmarks.common import write_report  # noqa: E402
from benchmarks.video_cpu import clicks, synthetic_frames  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MODELS = ("edgetam", "sam2.1_hiera_tiny")
POINTERS = 16


def export_of(name: str, store: Path, threads: int) -> Path:
    """The store's export of a random checkpoint of ``name`` (written and exported on first use)."""
    from sam2edge.contract.manifest import MANIFEST_NAME, onnx_dir
    from sam2edge.export.onnx_export import ExportSettings, export_checkpoint
    from sam2edge.integrity import sha256_file
    from sam2edge.model.checkpoint import write_random_checkpoint

    ckpt = store / "checkpoints" / f"{name}.pt"
    if not ckpt.is_file():
        write_random_checkpoint(ckpt, name, seed=1)
    folder = onnx_dir(store, name, sha256_file(ckpt))
    if (folder / MANIFEST_NAME).is_file():
        return folder
    t0 = time.perf_counter()
    print(f"exporting {name} into {store} (minutes on a 2-core CPU)", flush=True)
    out = export_checkpoint(ckpt, root=store, settings=ExportSettings(threads=threads), progress=lambda m: print(m, flush=True))
    print(f"exported {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def predictor(onnx_dir: Path, threads: int):
    from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners
    from sam2edge.config import get_config
    from sam2edge.contract.manifest import read_manifest
    from sam2edge.runtime.image.predictor import SAM2

    manifest = read_manifest(onnx_dir)
    pred = SAM2(make_onnxruntime_runners(onnx_dir, threads=threads), get_config(manifest["variant"]))
    pred.host_constants = manifest["host_constants"]
    return pred


def attention_feeds(pred, frames: int) -> dict[str, np.ndarray]:
    """One object, ``frames`` memory frames (the model's own frame shape), POINTERS pointers."""
    from sam2edge.contract.artifacts import NUM_MEMORY_FRAMES, NUM_OBJ_PTRS, NUM_OBJECTS, Artifact, Tensor

    spec = pred.runners[Artifact.MEMORY_ATTENTION].spec
    feeds = spec.dummy_inputs("opt", overrides={NUM_OBJECTS.name: 1, NUM_MEMORY_FRAMES.name: frames,
                                                NUM_OBJ_PTRS.name: POINTERS})
    feeds[Tensor.MEMORY_TPOS] = np.array([6, *range(frames - 1)], np.int32)
    feeds[Tensor.OBJ_PTR_OFFSETS] = -np.arange(POINTERS, dtype=np.float32) / (POINTERS - 1)
    return feeds


def attention_gflop(cfg, frames: int) -> float:
    """Matmul GFLOP (2 x multiply-adds) of one memory-attention call for one object, from the shapes:
    per layer self-attention (4 projections, scores, weighted sum), cross-attention (query projection,
    key projection x2 for RoPE, scores over F*T+4P keys, 64-channel weighted sum, 64->256 output), MLP."""
    n, d, c, hidden = 4096, cfg.d_model, cfg.mem_dim, 2048
    keys = frames * cfg.memory_tokens_per_frame + 4 * POINTERS
    self_attn = 2 * n * d * d * 2 + 2 * n * d * d + 2 * n * n * d  # q,k (RoPE: 2 GEMMs each), v, out; scores + sum
    cross = 2 * n * d * d + 2 * keys * c * d + n * keys * d + n * keys * c + n * c * d
    mlp = 2 * n * d * hidden
    layers = cfg.memory_attention_layers
    return 2 * layers * (self_attn + cross + mlp) / 1e9


def track_ms(pred, frames: list[np.ndarray], objects: int) -> float:
    """ms per tracked frame: the whole propagation over frames 1.. after clicks on frame 0."""
    tracker = pred.track(frames, input_color_format="rgb", preprocessing="opencv", fill_hole_area=0)
    for k, xy in enumerate(clicks(objects)):
        tracker.add_points(0, k + 1, [xy], [1])
    t0 = time.perf_counter()
    n = sum(1 for _ in tracker.propagate())
    return 1000 * (time.perf_counter() - t0) / (n - 1)


def measurements(pred, frames: list[np.ndarray], lengths: list[int], objects: list[int]) -> dict[str, Callable[[], float]]:
    """name -> a call returning its time in ms."""
    from sam2edge.contract.artifacts import Artifact, Tensor
    from sam2edge.processing.preprocess import preprocess_opencv

    enc, dec, att = (pred.runners[a] for a in (Artifact.IMAGE_ENCODER, Artifact.PROMPT_DECODER, Artifact.MEMORY_ATTENTION))
    image = preprocess_opencv(np.ascontiguousarray(np.repeat(np.repeat(frames[0], 8, 0), 8, 1)))
    feats = enc.infer({Tensor.IMAGE: image})
    click = {Tensor.IMAGE_EMBED: feats[Tensor.IMAGE_EMBED], Tensor.HIGH_RES_0: feats[Tensor.HIGH_RES_0],
             Tensor.HIGH_RES_1: feats[Tensor.HIGH_RES_1],
             Tensor.POINT_COORDS: np.array([[[512.0, 400.0]]], np.float32), Tensor.POINT_LABELS: np.array([[1]], np.int32),
             Tensor.MASK_INPUT: np.zeros((1, 1, 256, 256), np.float32), Tensor.HAS_MASK_INPUT: np.zeros(1, np.float32)}

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            fn()
            return 1000 * (time.perf_counter() - t0)
        return run

    calls = {"encoder": timed(lambda: enc.infer({Tensor.IMAGE: image})), "click": timed(lambda: dec.infer(click))}
    for f in lengths:
        feeds = attention_feeds(pred, f)
        calls[f"memory_attention_{f}"] = timed(lambda feeds=feeds: att.infer(feeds))
    for k in objects:
        calls[f"track_{k}"] = lambda k=k: track_ms(pred, frames, k)
    return calls


def run(args: argparse.Namespace) -> dict:
    load_start = [round(v, 2) for v in os.getloadavg()]
    store = Path(args.store)
    lengths, objects = [int(v) for v in args.memory_lengths.split(",")], [int(v) for v in args.objects.split(",")]
    frames = synthetic_frames(args.frames)
    preds = {name: predictor(export_of(name, store, args.threads), args.threads) for name in MODELS}
    calls = {name: measurements(p, frames, lengths, objects) for name, p in preds.items()}
    for name in MODELS:  # warm-up: sessions created, first-call allocations done
        for fn in calls[name].values():
            fn()
    times: dict[str, dict[str, list[float]]] = {name: {k: [] for k in calls[name]} for name in MODELS}
    for r in range(args.repeats):
        for name in (MODELS if r % 2 == 0 else MODELS[::-1]):
            for key, fn in calls[name].items():
                times[name][key].append(fn())
        print(f"repeat {r + 1}/{args.repeats}: load {os.getloadavg()[0]:.2f}", flush=True)
    medians = {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}
    gflop = {name: {f"memory_attention_{f}": attention_gflop(preds[name].config, f) for f in lengths} for name in MODELS}
    return {"models": list(MODELS), "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
            "threads": args.threads, "repeats": args.repeats, "clip_frames": args.frames, "pointers": POINTERS,
            "memory_lengths": lengths, "objects": objects, "median_ms": medians, "runs_ms": times,
            "memory_attention_gflop": gflop, "load_start": load_start,
            "load_end": [round(v, 2) for v in os.getloadavg()]}


def markdown(result: dict) -> str:
    e, t = (result["median_ms"][m] for m in MODELS)
    rows = [("image encoder (ms)", "encoder"), ("click: prompt decoder (ms)", "click")]
    rows += [(f"memory attention, {f} memory frame{'s' if f > 1 else ''} (ms)", f"memory_attention_{f}")
             for f in result["memory_lengths"]]
    rows += [(f"tracking, {k} object{'s' if k > 1 else ''} (ms/frame)", f"track_{k}") for k in result["objects"]]
    lines = ["# EdgeTAM vs SAM2.1-tiny on ONNX Runtime (CPU, fp32, random weights)", "",
             f"{result['machine']}; {result['threads']} threads; medians of {result['repeats']} interleaved runs; "
             f"memory attention with 1 object and {result['pointers']} pointers; tracking on a {result['clip_frames']}-frame "
             "96x128 clip (model input 1024²), encoder included.", "",
             "| | EdgeTAM | SAM2.1-tiny | tiny / EdgeTAM |", "|---|---:|---:|---:|"]
    for label, key in rows:
        lines.append(f"| {label} | {e[key]:.0f} | {t[key]:.0f} | {t[key] / e[key]:.2f}x |")
    for k in result["objects"]:
        key = f"track_{k}"
        lines.append(f"| tracking, {k} object{'s' if k > 1 else ''} (frames/s) | {1000 / e[key]:.2f} | {1000 / t[key]:.2f} | |")
    g = result["memory_attention_gflop"]
    lines += ["", "Memory attention matmul GFLOP per call (1 object): " + ", ".join(
        f"{f} frame{'s' if f > 1 else ''}: EdgeTAM {g[MODELS[0]][f'memory_attention_{f}']:.0f}, "
        f"tiny {g[MODELS[1]][f'memory_attention_{f}']:.0f}" for f in result["memory_lengths"]) + ".",
              "", f"Load average (1/5/15 min) at start: {result['load_start']}, at end: {result['load_end']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default="/tmp/sam2edge-edgetam-bench", help="where the random checkpoints and exports live")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=5, help="clip length for tracking")
    p.add_argument("--memory-lengths", default="1,7")
    p.add_argument("--objects", default="1,4")
    p.add_argument("--out", default=str(RESULTS / "edgetam_cpu.json"))
    args = p.parse_args(argv)
    result = run(args)
    write_report(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
