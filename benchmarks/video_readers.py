"""Video file readers side by side: OpenCV vs PyAV (the strict reader ``video_backend="auto"`` now picks).

What the switch costs: PyAV lists every packet when it opens a file (one demux pass, no decoding)
and decodes with ``err_detect=explode``. Measured on one synthetic H.264 clip (B-frames, a keyframe
every 30 frames, textured so the encoder has work), per reader, interleaved runs, medians:

* open: constructing the source (PyAV: includes the packet listing);
* sequential: every frame in order, as forward propagation reads them (ms per frame);
* backward: every frame from the last to the first, as the reverse pass reads them (ms per frame).

    python benchmarks/video_readers.py --frames 300 --size 1280x720 --runs 3

Writes benchmarks/results/video_readers.json. Needs PyAV (pip install av).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, like the other benchmarks

from benchmarks.common import print_table, write_json  # noqa: E402
from sam2edge.runtime.video.frames import open_source  # noqa: E402


def write_clip(path: Path, frames: int, width: int, height: int) -> None:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height + 64, width + 64, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"g": "30", "bf": "2", "preset": "veryfast", "crf": "23"}
        for i in range(frames):
            dx, dy = i % 64, (2 * i) % 64
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[dy : dy + height, dx : dx + width]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def measure(path: Path, backend: str, backward: bool) -> dict[str, float]:
    t0 = time.perf_counter()
    src = open_source(path, video_backend=backend)
    opened = time.perf_counter() - t0
    order = range(src.num_frames - 1, -1, -1) if backward else range(src.num_frames)
    t0 = time.perf_counter()
    for i in order:
        src.read(i)
    per_frame = (time.perf_counter() - t0) / src.num_frames
    src.close()
    return {"open_ms": opened * 1e3, "ms_per_frame": per_frame * 1e3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        write_clip(path, args.frames, width, height)
        size_mb = path.stat().st_size / 1e6
        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.runs):  # interleaved: each run measures every reader and direction once
            for backend in ("opencv", "pyav"):
                for backward in (False, True):
                    r = measure(path, backend, backward)
                    key = f"{backend} {'backward' if backward else 'sequential'}"
                    for k, v in r.items():
                        results.setdefault(key, {}).setdefault(k, []).append(v)
    med = {k: {m: statistics.median(v) for m, v in d.items()} for k, d in results.items()}
    rows = [[k, v["open_ms"], v["ms_per_frame"]] for k, v in med.items()]
    for direction in ("sequential", "backward"):
        ratio = med[f"pyav {direction}"]["ms_per_frame"] / med[f"opencv {direction}"]["ms_per_frame"]
        rows.append([f"pyav / opencv, {direction}", "", round(ratio, 2)])
    print_table(f"{args.frames} frames {width}x{height} H.264 ({size_mb:.1f} MB), medians of {args.runs} interleaved runs",
                ["reader", "open (ms)", "ms / frame"], rows)
    write_json("video_readers", {"frames": args.frames, "size": [width, height], "file_mb": size_mb, "runs": args.runs,
                                 "medians": med})


if __name__ == "__main__":
    main()
