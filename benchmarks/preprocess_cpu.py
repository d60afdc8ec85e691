"""Frame and image pre-processing side by side with the official operations (CPU, one thread of Python).

What a frame costs the host before the image encoder sees it; on a GPU box this is time the
device waits for, every frame. Rows, for each input size (a natural photo from scikit-image,
stretched to the size, so both sides resample the same content):

* video frame, ``preprocessing="exact"`` (the default where Pillow is installed): ours
  (``preprocess_pil``) against the official video loader's steps transcribed from
  ``sam2.utils.misc`` (``_load_img_as_tensor``: Pillow bicubic resize, /255 in float64,
  ``torch.from_numpy(...).permute``, copied into a float32 tensor, then ``-= mean`` and
  ``/= std``), the file decoding left out of both. The outputs are asserted equal, bit for bit.
* video frame or image, ``preprocessing="opencv"`` (numpy + OpenCV, no torch: the light
  runtime's image path): ours (``preprocess_opencv``) against the official image predictor's
  operations (``sam2edge.model.preprocess.preprocess_torch``: /255, torch's antialiased
  bilinear ``F.interpolate``, normalise; bit-exact with ``SAM2Transforms``, which needs
  torchvision). The largest difference is reported (float rounding, ~1e-6).

Runs are interleaved; medians of ``--runs``; ratio = official / ours.

    python benchmarks/preprocess_cpu.py --runs 15

Writes benchmarks/results/preprocess_cpu.json and .md. Needs torch, Pillow and scikit-image.
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

SIZES = {"720p": (720, 1280), "1080p": (1080, 1920), "4K": (2160, 3840)}


def photo(h: int, w: int) -> np.ndarray:
    import cv2
    from skimage import data

    return np.ascontiguousarray(cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_CUBIC))


def official_video_loader(rgb: np.ndarray, size: int = 1024):
    """The official frame loader's arithmetic on a decoded RGB frame (``sam2.utils.misc``)."""
    import torch
    from PIL import Image

    img_np = np.array(Image.fromarray(rgb).convert("RGB").resize((size, size)))
    img_np = img_np / 255.0
    img = torch.from_numpy(img_np).permute(2, 0, 1)
    images = torch.zeros(1, 3, size, size, dtype=torch.float32)
    images[0] = img
    images -= torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
    images /= torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]
    return images


def bench(sizes: list[str], runs: int) -> list[dict]:
    import torch

    from sam2edge.model.preprocess import preprocess_torch
    from sam2edge.processing.preprocess import preprocess_opencv, preprocess_pil

    pairs = {
        "video frame, exact (Pillow)": (preprocess_pil, lambda rgb: official_video_loader(rgb).numpy()),
        "opencv (image predictor's operations)": (preprocess_opencv, lambda rgb: preprocess_torch(rgb).numpy()),
    }
    rows = []
    for name in sizes:
        rgb = photo(*SIZES[name])
        for what, (ours, official) in pairs.items():
            a, b = ours(rgb), official(rgb)
            diff = float(np.abs(a - b).max())
            if what.startswith("video") and diff != 0.0:
                raise SystemExit(f"{what} {name}: ours differs from the official loader by {diff:.1e}")
            times: dict[str, list[float]] = {"ours": [], "official": []}
            for _ in range(runs):
                for side, fn in (("ours", ours), ("official", official)):
                    t0 = time.perf_counter()
                    fn(rgb)
                    times[side].append(1e3 * (time.perf_counter() - t0))
            ms = {side: statistics.median(t) for side, t in times.items()}
            rows.append({"input": name, "shape": list(rgb.shape), "what": what, "ms": ms,
                         "speedup": ms["official"] / ms["ours"], "max_abs_diff": diff,
                         "torch_threads": torch.get_num_threads()})
            print(rows[-1], flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = ["# Pre-processing, ours vs the official operations (CPU)", "",
             f"{result['runs']} interleaved runs, medians; load average {result['load_before'][0]:.2f} before, "
             f"{result['load_after'][0]:.2f} after; torch threads {result['rows'][0]['torch_threads']}.", "",
             "| input | what | ours ms | official ms | official / ours | max abs diff |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['input']} {r['shape'][1]}x{r['shape'][0]} | {r['what']} | {r['ms']['ours']:.1f} | "
                     f"{r['ms']['official']:.1f} | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {list(SIZES)}")
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--threads", type=int, default=2, help="torch threads for the official operations")
    p.add_argument("--out", default=str(RESULTS / "preprocess_cpu.json"))
    args = p.parse_args(argv)
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"--sizes: unknown {unknown}; expected some of {list(SIZES)}")
    import torch

    torch.set_num_threads(args.threads)
    result = {"machine": machine(), "runs": args.runs, "load_before": os.getloadavg()}
    result["rows"] = bench(sizes, args.runs)
    result["load_after"] = os.getloadavg()
    write_report(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
