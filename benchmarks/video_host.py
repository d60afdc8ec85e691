"""The host's share of a tracked frame, and what the frame prefetch hides of it (CPU).

On a GPU the networks of a tracked frame take tens of milliseconds, so the host's own work per
frame (decode, pre-process to 1024x1024, memory selection, post-processing) decides the frame
rate as much as the device does. This measures the tracker with the cheap runners of
tests/video/fakes.py made to wait ``--device-ms`` per frame the way a device call does (a sleep:
the GIL is free, as while ONNX Runtime or TensorRT runs), split over the four networks like a
real frame (encoder 50%, memory attention 35%, memory encoder 10%, decoder 5%). Rows: frame
size x pre-processing (exact: Pillow, the default; opencv) x device time, ms per tracked frame
with ``prefetch`` off and on (medians of interleaved runs). With 0 ms it is the host alone.

This is a model of a device, not a GPU measurement: no GPU was lent to measure one. On the CPU
with the real ONNX Runtime networks (seconds per frame) the prefetch is lost in the noise.

    python benchmarks/video_host.py --device-ms 0,20,40 --runs 5

Writes benchmarks/results/video_host.json and .md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, like the other benchmarks
from benchmarks.common import RESULTS, machine, write_report  # noqa: E402

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920)}
SHARE = {"image_encoder": 0.5, "memory_attention": 0.35, "memory_encoder": 0.1, "prompt_decoder": 0.05}


def device_like_model(device_ms: float):
    """FakeModel whose runners also wait their share of ``device_ms`` per call (GIL released)."""
    from tests.video.fakes import FakeModel

    model = FakeModel()
    for name, runner in model.runners.items():
        compute = runner._infer_impl

        def infer(feeds, compute=compute, wait=device_ms * SHARE[name] / 1000.0):
            time.sleep(wait)
            return compute(feeds)

        runner._infer_impl = infer
    return model


def frames_of(size: str, n: int) -> list[np.ndarray]:
    h, w = SIZES[size]
    base = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def ms_per_frame(frames, device_ms: float, preprocessing: str, prefetch: bool) -> float:
    """Median ms per tracked frame over a propagation (2 objects, clicked on frame 0)."""
    from sam2edge.runtime.video import track

    h, w = frames[0].shape[:2]
    tracker = track(device_like_model(device_ms), frames, input_color_format="rgb", preprocessing=preprocessing,
                    prefetch=prefetch)
    tracker.add_points(0, 1, points=[[w * 0.25, h * 0.4]], labels=[1])
    tracker.add_box(0, 2, box=[w * 0.5, h * 0.2, w * 0.7, h * 0.6])
    steps, results = [], tracker.propagate()
    while True:
        t0 = time.perf_counter()
        if next(results, None) is None:
            break
        steps.append(1000 * (time.perf_counter() - t0))
    tracker.close()
    return statistics.median(steps[2:])  # frame 0 reuses the clicks, frame 1 is read without a prefetch


def bench(sizes: list[str], modes: list[str], device_ms: list[float], frames: int, runs: int) -> list[dict]:
    rows = []
    for size in sizes:
        clip = frames_of(size, frames)
        for mode in modes:
            for dev in device_ms:
                times: dict[str, list[float]] = {"off": [], "on": []}
                for _ in range(runs):
                    for key in ("off", "on"):
                        times[key].append(ms_per_frame(clip, dev, mode, key == "on"))
                ms = {k: statistics.median(v) for k, v in times.items()}
                rows.append({"size": size, "preprocessing": mode, "device_ms": dev, "ms": ms, "runs_ms": times,
                             "speedup": ms["off"] / ms["on"], "load_avg": os.getloadavg()[0]})
                print({k: v for k, v in rows[-1].items() if k != "runs_ms"}, flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = ["# The host's share of a tracked frame, prefetch off vs on (CPU, cheap runners that wait like a device)", "",
             f"2 objects, {result['frames']} frames, median ms per tracked frame, {result['runs']} interleaved runs; "
             f"load average {result['load_before'][0]:.2f} before, {result['load_after'][0]:.2f} after.", "",
             "| frames | pre-processing | device ms per frame | prefetch off | prefetch on | off / on |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['size']} | {r['preprocessing']} | {r['device_ms']:.0f} | {r['ms']['off']:.1f} | "
                     f"{r['ms']['on']:.1f} | {r['speedup']:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="720p,1080p", help=f"comma-separated, of {list(SIZES)}")
    p.add_argument("--preprocessing", default="exact,opencv", help="comma-separated: exact, opencv")
    p.add_argument("--device-ms", default="0,20,40", help="device time per frame to model, comma-separated")
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "video_host.json"))
    args = p.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    modes = [m for m in args.preprocessing.split(",") if m]
    if [s for s in sizes if s not in SIZES] or [m for m in modes if m not in ("exact", "opencv")]:
        raise SystemExit(f"--sizes must be some of {list(SIZES)} and --preprocessing of exact, opencv; got {args.sizes!r}, "
                         f"{args.preprocessing!r}")
    device_ms = [float(v) for v in args.device_ms.split(",") if v]
    if any(v < 0 for v in device_ms) or args.frames < 4 or args.runs < 1:
        raise SystemExit("--device-ms must be >= 0, --frames >= 4 and --runs >= 1")
    result = {"machine": machine(), "frames": args.frames, "runs": args.runs, "load_before": os.getloadavg()}
    result["rows"] = bench(sizes, modes, device_ms, args.frames, args.runs)
    result["load_after"] = os.getloadavg()
    write_report(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
