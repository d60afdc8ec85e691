"""Automatic mask generation on the CPU: official SAM2AutomaticMaskGenerator vs ours (PyTorch, ONNX Runtime).

One run, for hiera_t (random weights, identical for all three), a 1920x1080 photograph and two
option sets: the official defaults, and the defaults with ``crop_n_layers=1``. Every
measurement is one ``generate`` call in a fresh process (model loaded first, not timed), so
wall time and peak memory (VmHWM) come from the same call; the backends are interleaved
within each repetition. Ours run with the generator's stage timers on, which give the
profile (where our remaining time goes) and the number of masks left after each filter.
The mask sets are compared with the official one (one-to-one match, IoU >= 0.99, predicted
IoU and stability within 1e-3, equal boxes).

Weights: every tensor random, then ``tests.amg_weights.localising_weights`` (masks that depend
on the point, as with a real checkpoint; plain random weights give one mask per image), with
the IoU head shifted (``--iou-bias``) so that a real-checkpoint-like share of the masks passes
the default ``pred_iou_thresh``; the figures printed say how many masks each filter kept.

    python benchmarks/amg_cpu.py [--runs 3] [--threads 2] [--configs default,crops[-pps8]] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sam2edge.contract.artifacts import Artifact  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
VARIANT = "sam2.1_hiera_tiny"
CONFIGS = {"default": {}, "crops": {"crop_n_layers": 1}}


def options_for(config: str) -> dict[str, Any]:
    """A config name -> generator options: "default", "crops", or either with "-ppsN" (points_per_side=N),
    for a shorter run on a loaded machine (e.g. "crops-pps8")."""
    base, _, pps = config.partition("-pps")
    if base not in CONFIGS or (pps and not pps.isdigit()):
        raise SystemExit(f"unknown config {config!r}: use {sorted(CONFIGS)}, optionally with -ppsN")
    return {**CONFIGS[base], **({"points_per_side": int(pps)} if pps else {})}
BACKENDS = ("official_torch", "ours_torch", "ours_onnxruntime")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_image() -> np.ndarray:
    import cv2
    from skimage import data

    return np.ascontiguousarray(cv2.resize(data.astronaut(), (1920, 1080), interpolation=cv2.INTER_LINEAR))


# -- weights and export (cached) ---------------------------------------------------------------
def prepare(args: argparse.Namespace) -> tuple[Path, Path]:
    """Checkpoint (official format) and its ONNX export, made once per seed / IoU bias in --cache."""
    import torch
    from sam2.build_sam import build_sam2  # builds without torchvision; the shims would confuse the ONNX exporter

    from sam2edge.model.testing import randomize_parameters
    from tests.amg_weights import localising_weights
    from tests.oracle import official_config_file

    cache = Path(args.cache) / f"{VARIANT}-seed{args.seed}-iou{args.iou_bias:g}"
    ckpt, onnx_dir = cache / f"{VARIANT}.pt", cache / "onnx"
    if not ckpt.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_sam2(official_config_file(VARIANT), ckpt_path=None, device="cpu", mode="eval")
        localising_weights(randomize_parameters(model, args.seed), iou_bias=args.iou_bias)
        torch.save({"model": model.state_dict()}, ckpt)
    if not (onnx_dir / "manifest.json").is_file():
        from sam2edge.export.onnx_export import ExportSettings, export_checkpoint

        print(f"exporting image_encoder + prompt_decoder to {onnx_dir} ...", flush=True)
        export_checkpoint(ckpt, artifacts=Artifact.IMAGE, out_dir=onnx_dir,
                          settings=ExportSettings(threads=args.threads), progress=lambda m: print("  " + m, flush=True))
    return ckpt, onnx_dir


# -- one measurement, in a fresh process ------------------------------------------------------
def child(args: argparse.Namespace) -> dict[str, Any]:
    img, options = test_image(), options_for(args.config)
    if args.child == "ours_onnxruntime":
        sys.modules["torch"] = None  # type: ignore[assignment]  # the light runtime: no torch at all
    else:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    generate, stats = load(args)
    load_s, loaded = time.perf_counter() - t0, rss_mb()
    t0 = time.perf_counter()
    records = generate(img, options)
    wall = time.perf_counter() - t0
    peak = vm_hwm_mb()
    from sam2edge.processing.amg import mask_to_rle

    out = Path(args.records)
    out.write_text(json.dumps([{**{k: v for k, v in r.items() if k != "segmentation"},
                                "rle": mask_to_rle(r["segmentation"])} for r in records]))
    return {"wall_s": wall, "load_s": load_s, "loaded_rss_mb": loaded, "peak_rss_mb": peak, "masks": len(records),
            **stats()}


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """-> (generate(image, options) -> records, stats() -> dict), the model loaded the way users load it."""
    if args.child == "official_torch":
        from tests.amg_shims import install

        install()
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
        from sam2.build_sam import build_sam2

        from tests.oracle import official_config_file

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = build_sam2(official_config_file(VARIANT), args.checkpoint, device="cpu")

        def generate(img: np.ndarray, options: dict) -> list:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return SAM2AutomaticMaskGenerator(model, **options).generate(img)

        return generate, dict
    from sam2edge.runtime.image.automatic import AutomaticMaskGenerator
    from sam2edge.runtime.image.automatic_options import AutomaticMaskOptions
    from sam2edge.runtime.image.predictor import SAM2

    if args.child == "ours_torch":
        model = SAM2.from_pretrained(args.checkpoint, backend="torch", device="cpu", preprocessing="exact")
    else:
        from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners
        from sam2edge.config import get_config

        runners = make_onnxruntime_runners(args.onnx_dir, threads=args.threads, artifacts=list(Artifact.IMAGE))
        for r in runners.values():
            r.activate()
        model = SAM2(runners, get_config(VARIANT), preprocessing="opencv")
    made: list[AutomaticMaskGenerator] = []

    def generate(img: np.ndarray, options: dict) -> list:
        made.append(AutomaticMaskGenerator(model.runners, model._preprocess, model.config,
                                           AutomaticMaskOptions.from_kwargs(**options)))
        return made[-1].generate(img)

    return generate, lambda: {"stage_s": dict(made[-1].seconds), "counts": dict(made[-1].counts)}


# -- the run ------------------------------------------------------------------------------------
def run_child(backend: str, config: str, args: argparse.Namespace, ckpt: Path, onnx_dir: Path, records: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", backend, "--config", config, "--threads", str(args.threads),
           "--checkpoint", str(ckpt), "--onnx-dir", str(onnx_dir), "--records", str(records)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=6 * 3600)
    if res.returncode != 0:
        raise RuntimeError(f"{backend}/{config} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def agreement(ours: list[dict], ref: list[dict]) -> dict[str, Any]:
    """The issue's agreement figures for two record sets (masks as uncompressed RLE)."""
    from scipy.optimize import linear_sum_assignment

    from sam2edge.processing.amg import rle_to_mask

    out: dict[str, Any] = {"masks": len(ours), "official_masks": len(ref)}
    if not ours or not ref:
        return out | {"identical_set": len(ours) == len(ref)}
    a = np.stack([rle_to_mask(r["rle"]).ravel() for r in ours]).astype(np.float32)
    b = np.stack([rle_to_mask(r["rle"]).ravel() for r in ref]).astype(np.float32)
    inter = a @ b.T
    iou = inter / np.maximum(a.sum(1)[:, None] + b.sum(1)[None] - inter, 1)
    rows, cols = linear_sum_assignment(-iou)
    pairs = list(zip(rows, cols))
    out |= {
        "min_iou": float(iou[rows, cols].min()),
        "max_predicted_iou_diff": max(abs(ours[i]["predicted_iou"] - ref[j]["predicted_iou"]) for i, j in pairs),
        "max_stability_diff": max(abs(ours[i]["stability_score"] - ref[j]["stability_score"]) for i, j in pairs),
        "bbox_mismatches": sum(ours[i]["bbox"] != ref[j]["bbox"] for i, j in pairs),
    }
    out["identical_set"] = bool(len(ours) == len(ref) and out["min_iou"] >= 0.99 and out["bbox_mismatches"] == 0
                                and out["max_predicted_iou_diff"] <= 1e-3 and out["max_stability_diff"] <= 1e-3)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iou-bias", type=float, default=1.5)
    p.add_argument("--configs", default="default,crops")
    p.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "sam2edge-bench-amg"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "amg_cpu.json"))
    for hidden in ("--child", "--config", "--checkpoint", "--onnx-dir", "--records"):
        p.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.child:
        print(json.dumps(child(args)))
        return 0
    configs = args.configs.split(",")
    options = {c: options_for(c) for c in configs}  # unknown names stop here, before any work
    info = {"cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"),
            "logical_cores": os.cpu_count(), "threads": args.threads, "python": platform.python_version(),
            "loadavg_start": os.getloadavg()}
    ckpt, onnx_dir = prepare(args)
    work = Path(tempfile.mkdtemp(prefix="sam2edge-amg-"))
    runs: dict[str, dict[str, list[dict]]] = {c: {b: [] for b in BACKENDS} for c in configs}
    for rep in range(args.runs):
        for config in configs:
            for backend in BACKENDS:  # interleaved: load from other processes hits all three alike
                res = run_child(backend, config, args, ckpt, onnx_dir, work / f"{config}-{backend}-{rep}.json")
                runs[config][backend].append(res)
                print(f"run {rep + 1}/{args.runs} {config:11s} {backend:17s} {res['wall_s']:8.1f} s  "
                      f"peak {res['peak_rss_mb']:6.0f} MB  {res['masks']} masks  {res.get('counts', '')}", flush=True)
    info["loadavg_end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min) before {info['loadavg_start']}, after {info['loadavg_end']}")
    payload = report(runs, configs, work, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "amg_cpu", "variant": VARIANT, "image": "astronaut 1920x1080",
                               "iou_bias": args.iou_bias, "runs": args.runs, "options": options, "machine": info, **payload},
                              indent=1, default=float) + "\n")
    print(f"wrote {out}")
    return 0


def report(runs: dict, configs: list[str], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    rows, agree, profile = [], {}, {}
    print(f"\n{VARIANT}, 1920x1080, {args.threads} threads, median of {args.runs} (interleaved, fresh process each)")
    print(f"{'options':11s} {'backend':17s} {'median s':>9s} {'min s':>8s} {'x official':>10s} {'peak MB':>8s} "
          f"{'peak / official':>15s} {'masks':>6s}")
    for config in configs:
        ref_t = statistics.median(r["wall_s"] for r in runs[config]["official_torch"])
        ref_m = statistics.median(r["peak_rss_mb"] for r in runs[config]["official_torch"])
        ref_records = json.loads((work / f"{config}-official_torch-0.json").read_text())
        for backend in BACKENDS:
            rs = runs[config][backend]
            med, peak = statistics.median(r["wall_s"] for r in rs), statistics.median(r["peak_rss_mb"] for r in rs)
            row = {"options": config, "backend": backend, "median_s": med, "min_s": min(r["wall_s"] for r in rs),
                   "speedup_vs_official": ref_t / med, "peak_rss_mb": peak, "peak_ratio_vs_official": peak / ref_m,
                   "loaded_rss_mb": statistics.median(r["loaded_rss_mb"] for r in rs), "masks": rs[0]["masks"],
                   "runs_s": [r["wall_s"] for r in rs]}
            rows.append(row)
            print(f"{config:11s} {backend:17s} {med:9.1f} {row['min_s']:8.1f} {row['speedup_vs_official']:10.2f} "
                  f"{peak:8.0f} {row['peak_ratio_vs_official']:15.2f} {row['masks']:6d}")
            if backend != "official_torch":
                ours = json.loads((work / f"{config}-{backend}-0.json").read_text())
                agree[f"{config}/{backend}"] = agreement(ours, ref_records)
                stages = {k: statistics.median(r["stage_s"].get(k, 0.0) for r in rs) for k in rs[0]["stage_s"]}
                profile[f"{config}/{backend}"] = {"stage_s": stages, "counts": rs[0]["counts"]}
    print("\nagreement with the official mask set:")
    for k, v in agree.items():
        print(f"  {k:26s} {v}")
    print("\nwhere our time goes (median seconds per stage; masks left after each filter):")
    for k, v in profile.items():
        total = sum(v["stage_s"].values())
        print(f"  {k:26s} " + ", ".join(f"{s} {t:.1f}s ({100 * t / total:.0f}%)" for s, t in v["stage_s"].items()))
        print(f"  {'':26s} {v['counts']}")
    return {"rows": rows, "agreement": agree, "profile": profile}


if __name__ == "__main__":
    sys.exit(main())
