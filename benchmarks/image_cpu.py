"""Image API, ours vs the official SAM2ImagePredictor, same random weights, one process, CPU.

    python benchmarks/image_cpu.py [--variant sam2.1_hiera_tiny] [--runs 5] [--threads 2] [--onnx DIR]

* time to first mask: image (1920x1080) -> embed -> one click -> mask at full resolution
* time per extra click with the embedding cached: decoder + upsample to 1920x1080 + threshold

With ``--onnx DIR`` (an exported set from ``sam2edge export``) the ONNX Runtime path is
timed too. Prints a table with ratios (official / ours) and writes
benchmarks/results/image_cpu.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import peak_rss_mb, print_table, time_it, write_json  # noqa: E402
from tests.oracle import official_model, test_images  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="sam2.1_hiera_tiny")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--onnx", default=None, help="an exported folder to time the ONNX Runtime path too")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    from tests.torchvision_shim import install

    install()
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from sam2edge import AutoModel

    official = official_model(args.variant)
    ckpt = Path(tempfile.mkdtemp()) / f"{args.variant}.pt"
    torch.save({"model": official.state_dict()}, ckpt)
    oracle = SAM2ImagePredictor(official)
    models = {"ours (torch, exact preprocessing)": AutoModel.from_pretrained(str(ckpt), preprocessing="exact"),
              "ours (torch, OpenCV preprocessing)": AutoModel.from_pretrained(str(ckpt), preprocessing="opencv")}
    if args.onnx:
        models["ours (onnxruntime)"] = AutoModel.from_pretrained(args.onnx, backend="onnxruntime")
    rgb = cv2.resize(test_images()["astronaut"], (1920, 1080), interpolation=cv2.INTER_LINEAR)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    click = np.array([[960.0, 540.0]], np.float32)
    label = np.array([1])

    def official_first():
        oracle.set_image(rgb)
        return oracle.predict(point_coords=click, point_labels=label, multimask_output=True)

    def official_click():
        return oracle.predict(point_coords=click, point_labels=label, multimask_output=True)

    results, rows = {}, []
    t_first = time_it(official_first, runs=args.runs)
    oracle.set_image(rgb)
    t_click = time_it(official_click, runs=args.runs * 4)
    results["official"] = {"first_mask": t_first, "click": t_click}
    rows.append(["official SAM2ImagePredictor", t_first["median_ms"], t_click["median_ms"], "1.00x", "1.00x"])
    for name, model in models.items():
        def first(m=model):
            emb = m.embed_images(bgr, use_embeddings_cache=False)
            return m.segment_images(embeddings=emb, point_coordinates=click, point_labels=label)

        emb = model.embed_images(bgr, use_embeddings_cache=False)

        def extra(m=model, e=emb):
            return m.segment_images(embeddings=e, point_coordinates=click, point_labels=label)

        f, c = time_it(first, runs=args.runs), time_it(extra, runs=args.runs * 4)
        results[name] = {"first_mask": f, "click": c, "backend": model.active_backend}
        rows.append([name, f["median_ms"], c["median_ms"], f"{t_first['median_ms'] / f['median_ms']:.2f}x",
                     f"{t_click['median_ms'] / c['median_ms']:.2f}x"])
    print_table(f"{args.variant}, 1920x1080 image, 1 click, 3 masks, CPU fp32, {args.threads} threads (median ms)",
                ["path", "first mask", "extra click", "first: off/ours", "click: off/ours"], rows)
    write_json("image_cpu", {"variant": args.variant, "image": [1080, 1920], "results": results, "peak_rss_mb": peak_rss_mb()})


if __name__ == "__main__":
    main()
