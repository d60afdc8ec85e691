"""Video tracking on the CPU: ours (ONNX Runtime and PyTorch runners) vs the official SAM2VideoPredictor.

Same random-weight checkpoint everywhere, fp32, same synthetic clip, same clicks, one process;
every figure is a median of runs interleaved across the backends (ours ONNX Runtime, ours
PyTorch, official), with the load average next to it. Three parts:

1. ms per tracked frame vs number of objects (1, 2, 4, 8): all objects clicked on frame 0,
   then frames 1..F-1 tracked (memory depth 1..F-1 frames, the same for both): the wall time of
   the whole propagation (encoder and the clicked frame's memory encoding included) divided by
   the number of tracked frames. The marginal cost of an object is the least-squares slope.
2. memory attention alone, one object, 16 pointers, F = 1, 4, 7 memory frames: ours on each
   backend vs the official module called as its predictor calls it; matmul GFLOP of each form
   and our fp32 matmul bound (GFLOP / the GEMM rate measured in this run), see
   benchmarks/memory_attention_cost.py.
3. memory over a stream: ours (``stream.track``) keeps a bounded bank; the official keeps every
   frame's image tensor and output. Bytes held after each frame, counted exactly from the
   arrays/tensors each keeps (ours: ``memory_bytes()``; official: every tensor in its state).

    python benchmarks/video_cpu.py --objects 1,2,4,8 --frames 5 --repeats 3 --onnx /tmp/video-bench-onnx

``--onnx DIR`` is where the ONNX export of the random weights lives: it is exported there (a few
minutes) unless DIR already holds an export of these weights by this code. Writes
benchmarks/results/video_cpu.json and .md. Needs torch, onnxruntime, onnx and the official sam2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

NAME = "sam2.1_hiera_tiny"
HEIGHT, WIDTH = 96, 128
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, like the other benchmarks
from benchmarks.common import write_report  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TORCH, ONNX, OFFICIAL = "ours (PyTorch)", "ours (ONNX Runtime)", "official"
# What a run is timed with: wall time (default), or this process's CPU time (``--clock cpu``, with
# ``--threads 1`` a load-independent measure of the work done on a busy shared machine).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def synthetic_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([90 + 30 * np.sin(xx / 7), 110 + 25 * np.cos(yy / 5), 70 + 20 * np.sin((xx + yy) / 9)], -1)
    base = base + rng.integers(0, 40, (HEIGHT, WIDTH, 3))
    frames = []
    for t in range(n):
        img = base.copy()
        for k in range(8):  # eight small textured blobs drifting right
            cx, cy = 12 + 14 * k + 2 * t, 20 + 50 * (k % 2) + t
            blob = (xx - cx) ** 2 + (yy - cy) ** 2 <= 36
            stripes = (xx[blob] // 2) % 2
            img[blob] = np.stack([40 + 25 * k + 0 * stripes, 220 - 20 * k - 60 * stripes, 120 + 10 * k * stripes], -1)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


def clicks(num_objects: int, t: int = 0) -> list[tuple[float, float]]:
    return [(12 + 14 * k + 2 * t, 20 + 50 * (k % 2) + t) for k in range(num_objects)]


def build_models(threads: int):
    import torch

    from sam2edge.backends.torch_runner import make_torch_runners
    from sam2edge.config import get_config
    from sam2edge.model import build_model
    from sam2edge.model.testing import randomize_parameters
    from sam2edge.runtime.image.predictor import SAM2

    torch.set_num_threads(threads)
    from sam2.build_sam import build_sam2_video_predictor

    cfg = get_config(NAME)
    short = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}[cfg.size]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = build_sam2_video_predictor(f"configs/sam2.1/{cfg.version}_hiera_{short}.yaml", None, device="cpu")
    randomize_parameters(official, 0)
    _patch_bf16(official.eval())
    net = build_model(NAME)
    net.load_state_dict(official.state_dict(), strict=True)
    return net.eval(), SAM2(make_torch_runners(net.eval(), "cpu"), cfg), official


def _fingerprint(net) -> str:
    """sha256 of the weights and of the code that exports them (model/ and export/ sources)."""
    h = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    root = Path(__file__).resolve().parents[1] / "sam2edge"
    for src in sorted([*root.glob("model/*.py"), *root.glob("export/*.py")]):
        h.update(src.read_bytes())
    return h.hexdigest()


def onnx_predictor(net, folder: Path, threads: int):
    """Our predictor on ONNX Runtime (CPU) from an export of ``net`` in ``folder`` (exported if absent or stale)."""
    from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners
    from sam2edge.config import get_config
    from sam2edge.contract.manifest import read_manifest
    from sam2edge.export.onnx_export import ExportSettings, export_model
    from sam2edge.runtime.image.predictor import SAM2

    sha = _fingerprint(net)
    manifest = folder / "manifest.json"
    if not manifest.is_file() or read_manifest(folder)["checkpoint"]["sha256"] != sha or \
            set(read_manifest(folder)["artifacts"]) != {"image_encoder", "prompt_decoder", "memory_attention", "memory_encoder"}:
        t0 = time.perf_counter()
        print(f"exporting the random-weight model to {folder} (minutes on a 2-core CPU)", flush=True)
        export_model(net, folder, {"path": f"random weights ({NAME}, seed 0)", "sha256": sha},
                     settings=ExportSettings(threads=threads), progress=lambda m: print(m, flush=True))
        print(f"exported in {time.perf_counter() - t0:.0f} s", flush=True)
    pred = SAM2(make_onnxruntime_runners(folder, threads=threads), get_config(NAME))
    pred.host_constants = read_manifest(folder)["host_constants"]
    return pred


def _patch_bf16(pred) -> None:
    """See tests/video/scenario.py: fp32 CPU needs the bf16 memory widened when no pointer exists."""
    original = pred.memory_attention.forward

    def forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return original(curr, memory.float(), curr_pos, memory_pos, num_obj_ptr_tokens)

    pred.memory_attention.forward = forward


def jpeg_folder(frames: list[np.ndarray]) -> tempfile.TemporaryDirectory:
    from PIL import Image

    tmp = tempfile.TemporaryDirectory(prefix="sam2edge-bench-")
    for i, f in enumerate(frames):
        Image.fromarray(f).save(Path(tmp.name) / f"{i}.jpg", quality=95)
    return tmp


def timed_steps(gen) -> list[float]:
    times = []
    while True:
        t0 = clock()
        try:
            next(gen)
        except StopIteration:
            return times
        times.append(1000 * (clock() - t0))


def _track_ours(pred, frames, n: int) -> tuple[float, dict[str, int]]:
    tracker = pred.track(frames, input_color_format="rgb", preprocessing="exact", fill_hole_area=0)
    for k, xy in enumerate(clicks(n)):
        tracker.add_points(0, k + 1, [xy], [1])
    calls_before = dict(tracker.nets.calls)
    # Frame 0 reuses the clicked outputs. Both sides are timed from the start of propagation, so
    # the clicked frame's memory encoding counts for both (the official runs it in its preflight,
    # before yielding frame 0; ours during the first tracked step), spread over the tracked frames.
    steps = timed_steps(tracker.propagate())
    calls = {a: tracker.nets.calls[a] - calls_before[a] for a in calls_before}
    return sum(steps) / (len(steps) - 1), calls


def _track_official(official, folder: str, n: int) -> float:
    import torch

    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = official.init_state(folder)
        for k, xy in enumerate(clicks(n)):
            official.add_new_points_or_box(state, 0, k + 1, points=[xy], labels=[1])
        steps = timed_steps(official.propagate_in_video(state))
    return sum(steps) / (len(steps) - 1)


def bench_objects(ours: dict, official, frames, folder: str, counts: list[int], repeats: int) -> list[dict]:
    """ms per tracked frame for each object count: medians of ``repeats`` runs, backends interleaved."""
    rows = []
    for n in counts:
        times: dict[str, list[float]] = {label: [] for label in [*ours, *([OFFICIAL] if official else [])]}
        calls = {}
        for _ in range(repeats):
            for label, pred in ours.items():
                ms, calls[label] = _track_ours(pred, frames, n)
                times[label].append(ms)
            if official is not None:
                times[OFFICIAL].append(_track_official(official, folder, n))
        ms = {label: statistics.median(t) for label, t in times.items()}
        row = {"objects": n, "tracked_frames": len(frames) - 1, "ms": ms, "runs_ms": times, "runner_calls": calls,
               "load_avg": os.getloadavg()[0]}
        if official is not None:
            row["speedup"] = {label: ms[OFFICIAL] / ms[label] for label in ours}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "runs_ms"}), flush=True)
    return rows


def marginal_ms(rows: list[dict], label: str) -> float:
    """Least-squares slope of ms per tracked frame against the number of objects."""
    xs = np.array([r["objects"] for r in rows], float)
    ys = np.array([r["ms"][label] for r in rows], float)
    return float(np.polyfit(xs, ys, 1)[0]) if len(rows) > 1 else float("nan")


def _official_state_bytes(state: dict) -> int:
    import torch

    seen: set[int] = set()

    def walk(x) -> int:
        if isinstance(x, torch.Tensor):
            key = x.untyped_storage().data_ptr()
            if key in seen:
                return 0
            seen.add(key)
            return x.untyped_storage().nbytes()
        if isinstance(x, dict):
            return sum(walk(v) for v in x.values())
        if isinstance(x, list | tuple):
            return sum(walk(v) for v in x)
        return 0

    return walk(state)


def bench_stream(ours, official, frames, folder: str, skip_official: bool) -> dict:
    import torch

    live = ours.stream(frames[0], {1: {"points": [clicks(1)[0]], "labels": [1]}}, input_color_format="rgb",
                       preprocessing="exact", fill_hole_area=0)
    mine = []
    for f in frames[1:]:
        live.track(f)
        mine.append(live.memory_bytes())
    out = {"frames": len(frames), "ours_bytes": mine}
    if not skip_official:
        theirs = []
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = official.init_state(folder)
            official.add_new_points_or_box(state, 0, 1, points=[clicks(1)[0]], labels=[1])
            for i, _ in enumerate(official.propagate_in_video(state)):
                if i:
                    theirs.append(_official_state_bytes(state))
        out["official_bytes"] = theirs
    return out


def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def _objects_table(result: dict) -> list[str]:
    rows = result["objects"]
    labels = [lb for lb in (ONNX, TORCH, OFFICIAL) if lb in rows[0]["ms"]]
    lines = ["| objects | " + " | ".join(f"{lb} ms/frame" for lb in labels) + " | "
             + " | ".join(f"official / {lb}" for lb in labels if lb != OFFICIAL) + " | load avg |",
             "|---:|" + "---:|" * (2 * len(labels) - (OFFICIAL in labels) + 1)]
    for r in rows:
        sp = [f"{r['speedup'][lb]:.2f}x" for lb in labels if lb != OFFICIAL] if "speedup" in r else []
        lines.append(f"| {r['objects']} | " + " | ".join(f"{r['ms'][lb]:.0f}" for lb in labels) + " | "
                     + " | ".join(sp) + f" | {r['load_avg']:.2f} |")
    if len(rows) > 1:
        slopes = {lb: marginal_ms(rows, lb) for lb in labels}
        text = ", ".join(f"{lb} {slopes[lb]:.0f} ms" for lb in labels)
        if OFFICIAL in slopes:
            text += "; ours / official: " + ", ".join(f"{lb} {slopes[lb] / slopes[OFFICIAL]:.2f}x"
                                                        for lb in labels if lb != OFFICIAL)
        lines += ["", f"Marginal cost of an object (least-squares slope over {[r['objects'] for r in rows]} objects): "
                  f"{text}."]
        per = {lb: {k: round(v / rows[-1]['tracked_frames'], 2) for k, v in c.items()}
               for lb, c in rows[-1]["runner_calls"].items()}
        lines += ["", f"Our runner calls per tracked frame with {rows[-1]['objects']} objects: {per}."]
    return lines


def _memory_table(result: dict) -> list[str]:
    rows = result["memory_attention"]
    labels = list(rows[0]["ms"])
    ours = [lb for lb in labels if lb != OFFICIAL]
    # JSON of runs before the ONNX Runtime probe was added hold a torch probe only.
    libraries = "the faster of torch and ONNX Runtime" if "gemm_gflops_by_library" in rows[0] else "torch"
    lines = ["", f"Memory attention alone, {rows[0]['objects']} object, {rows[0]['pointers']} pointers. The bound is our "
             f"matmul FLOPs over the fp32 GEMM rate of a probe ([4096, 256] @ [256, 4096], {libraries}, "
             f"{result['threads']} threads, same clock) timed in the same interleaved repeats as the row; ours / bound "
             "is the median over repeats of each call against its repeat's probe. A torch GEMM probe at the start of the run "
             f"read {result['gemm_peak_gflops']:.0f} GFLOP/s (best of 5).", "",
             "| memory frames | " + " | ".join(f"{lb} ms" for lb in labels)
             + " | GFLOP ours / official | GEMM GFLOP/s (min-max) | our bound ms | "
             + " | ".join(f"{lb} / bound" for lb in ours) + " | load avg |",
             "|---:|" + "---:|" * (len(labels) + len(ours) + 4)]
    for r in rows:
        if "ours_over_bound" in r:
            gemm = f"{r['gemm_gflops']:.0f} ({r['gemm_gflops_range'][0]:.0f}-{r['gemm_gflops_range'][1]:.0f})"
            ratios = [f"{r['ours_over_bound'][lb]:.2f}x" for lb in ours]
        else:  # rows of runs before the interleaved probe: one probe at the start
            gemm = f"{result['gemm_peak_gflops']:.0f} (start)"
            ratios = [f"{r['ms'][lb] / r['bound_ms']:.2f}x" for lb in ours]
        lines.append(f"| {r['memory_frames']} | " + " | ".join(f"{r['ms'][lb]:.0f}" for lb in labels)
                     + f" | {r['gflop_ours']:.0f} / {r['gflop_official']:.0f} | {gemm} | {r['bound_ms']:.0f} | "
                     + " | ".join(ratios) + f" | {r['load_avg']:.2f} |")
    return lines


def markdown(result: dict) -> str:
    lines = [f"# Video tracking on the CPU ({result['model']}, fp32, random weights)", "",
             f"{result['machine']}; {result['threads']} threads; {result.get('clock', 'wall')} time; "
             f"clip {WIDTH}x{HEIGHT} (model input 1024²), "
             f"{result['frames']} frames (tracked frames 1..{result['frames'] - 1}), medians of {result['repeats']} runs "
             "interleaved across backends. Times are the whole propagation over the tracked frames, encoder and the "
             "clicked frame's memory encoding included.", ""]
    lines += _objects_table(result)
    if result.get("memory_attention"):
        lines += _memory_table(result)
    s = result.get("stream")
    if s:
        lines += ["", f"Bytes held while streaming {s['frames']} frames (1 object): ours = cached features of the "
                  "current frame + the bounded bank (bf16 memory); official = its whole inference state (every "
                  "pre-processed frame, every output).", "",
                  "| after frame | ours MB | official MB |", "|---:|---:|---:|"]
        off = s.get("official_bytes") or []
        n = len(s["ours_bytes"])
        for i in sorted({*range(0, n, max(1, n // 8)), n - 1}):
            theirs = f"{off[i] / 2**20:.1f}" if i < len(off) else "-"
            lines.append(f"| {i + 1} | {s['ours_bytes'][i] / 2**20:.1f} | {theirs} |")
    lines += ["", f"Load average (1/5/15 min) at start: {result['load_start']}, at end: {result['load_end']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from benchmarks.memory_attention_cost import bench_memory_attention, gemm_peak_gflops

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", default="1,2,4,8")
    p.add_argument("--frames", type=int, default=5, help="clip length for the per-object timing")
    p.add_argument("--memory-lengths", default="1,4,7", help="empty to skip part 2")
    p.add_argument("--pointers", type=int, default=16, help="object pointers in part 2")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--stream-frames", type=int, default=24, help="0 to skip part 3")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall time, or process CPU time (use with --threads 1 on a busy machine)")
    p.add_argument("--onnx", default=str(Path(tempfile.gettempdir()) / "sam2edge-video-bench-onnx"),
                   help="export folder of the random weights (exported there if absent or stale)")
    p.add_argument("--backends", default="onnxruntime,torch", help="ours: onnxruntime, torch or both")
    p.add_argument("--skip-official", action="store_true")
    p.add_argument("--out", default=str(RESULTS / "video_cpu.json"))
    p.add_argument("--markdown-only", action="store_true", help="rewrite the .md from an existing --out JSON")
    args = p.parse_args(argv)
    if args.markdown_only:
        result = json.loads(Path(args.out).read_text())
        Path(args.out).with_suffix(".md").write_text(markdown(result))
        return 0
    global clock
    clock = CLOCKS[args.clock]
    load_start = [round(v, 2) for v in os.getloadavg()]
    net, ours_torch, official = build_models(args.threads)
    ours = {}
    if "onnxruntime" in args.backends:
        ours[ONNX] = onnx_predictor(net, Path(args.onnx), args.threads)
    if "torch" in args.backends:
        ours[TORCH] = ours_torch
    official_or_none = None if args.skip_official else official
    counts = [int(v) for v in args.objects.split(",") if v]
    frames = synthetic_frames(max(args.frames, args.stream_frames))
    result = {"model": NAME, "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
              f"{os.cpu_count()} CPUs", "threads": args.threads, "clock": args.clock, "frames": args.frames, "repeats": args.repeats,
              "load_start": load_start, "gemm_peak_gflops": gemm_peak_gflops(clock=clock)}
    with jpeg_folder(frames[: args.frames]) as folder:
        result["objects"] = bench_objects(ours, official_or_none, frames[: args.frames], folder, counts, args.repeats)
    lengths = [int(v) for v in args.memory_lengths.split(",") if v]
    if lengths:
        runners = {label: pred.runners["memory_attention"] for label, pred in ours.items()}
        result["memory_attention"] = bench_memory_attention(runners, official_or_none, lengths, args.pointers,
                                                            args.repeats, clock=clock)
    if args.stream_frames:
        with jpeg_folder(frames[: args.stream_frames]) as folder:
            result["stream"] = bench_stream(ours_torch, official, frames[: args.stream_frames], folder, args.skip_official)
    result["load_end"] = [round(v, 2) for v in os.getloadavg()]
    write_report(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
