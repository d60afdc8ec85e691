"""CPU latency and peak memory: official PyTorch vs our PyTorch vs our ONNX Runtime path.

One run measures, for one variant (random weights, identical in all three):

* encoder: ``set_image`` (official) vs ``embed_images`` (ours), preprocessing included,
  plus the network alone on a preprocessed tensor;
* one click: ``predict`` with one positive point, multimask, masks at the original
  1920x1080 (official) vs ``segment_images(embeddings=...)`` (ours: decoder + mask selection
  + upsample + threshold).

Backends are interleaved within every repetition so that load from other processes hits
all of them alike; medians (and minima) of ``--runs`` repetitions are reported. Peak
memory is measured per backend in a fresh process (VmHWM after loading, encoding and one
click; the ONNX Runtime process cannot import torch), plus the RSS each backend adds when
loaded into the timing process. ``--sweep`` also times ONNX Runtime session variants
(optimisation level, spin-waiting) and records them.

    python benchmarks/export_cpu.py --variant sam2.1_hiera_tiny --runs 5 [--onnx-dir DIR] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def vm_hwm() -> int:
    """Peak RSS of this process image (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_image() -> np.ndarray:
    import cv2

    try:
        from skimage import data

        img = data.astronaut()
    except ImportError:
        img = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    return np.ascontiguousarray(cv2.resize(img, (1920, 1080), interpolation=cv2.INTER_LINEAR))


def build_official(name: str, seed: int) -> Any:
    from tests.torchvision_shim import install

    install()  # only where torchvision is missing: ToTensor/Resize/Normalize stand-ins
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from tests.oracle import official_model

    return SAM2ImagePredictor(official_model(name, seed))


def ort_sessions_variants() -> dict[str, dict[str, Any]]:
    import onnxruntime as ort

    lv = ort.GraphOptimizationLevel
    return {
        "all_spin": {"level": lv.ORT_ENABLE_ALL, "spin": True},
        "all_nospin": {"level": lv.ORT_ENABLE_ALL, "spin": False},
        "extended_nospin": {"level": lv.ORT_ENABLE_EXTENDED, "spin": False},
        "basic_nospin": {"level": lv.ORT_ENABLE_BASIC, "spin": False},
    }


def ort_session(path: Path, threads: int, level: Any, spin: bool) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Load all three backends (RSS added by each recorded) and export ONNX if needed."""
    import torch

    from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners
    from sam2edge.backends.torch_runner import make_torch_runners
    from sam2edge.config import get_config
    from sam2edge.model import build_model
    from sam2edge.runtime.image.predictor import SAM2

    torch.set_num_threads(args.threads)
    cfg = get_config(args.variant)
    load: dict[str, int] = {}
    base = rss()
    official = build_official(args.variant, args.seed)
    load["official_torch"] = rss() - base
    base = rss()
    ours = build_model(cfg)
    ours.load_state_dict(official.model.state_dict(), strict=True)
    ours.eval()
    ours_torch = SAM2(make_torch_runners(ours, artifacts=("image_encoder", "prompt_decoder")), cfg)
    load["ours_torch"] = rss() - base
    onnx_dir = Path(args.onnx_dir) if args.onnx_dir else export_onnx(ours, args)
    base = rss()
    runners = make_onnxruntime_runners(onnx_dir, threads=args.threads, artifacts=["image_encoder", "prompt_decoder"])
    for r in runners.values():
        r.activate()
    ours_ort = SAM2(runners, cfg)
    load["ours_onnxruntime"] = rss() - base
    return {"official": official, "ours": ours, "ours_torch": ours_torch, "ours_ort": ours_ort,
            "onnx_dir": onnx_dir, "load_rss": load, "runners": runners}


def export_onnx(model: Any, args: argparse.Namespace) -> Path:
    from sam2edge.export.onnx_export import ExportSettings, export_model

    out = Path(tempfile.mkdtemp(prefix="sam2edge-bench-")) / "onnx"
    print(f"exporting image_encoder + prompt_decoder to {out} ...", flush=True)
    export_model(model, out, {"path": None, "sha256": None}, ["image_encoder", "prompt_decoder"],
                 ExportSettings(threads=args.threads), progress=lambda m: print("  " + m, flush=True))
    return out


def measure(env: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    import torch

    img = test_image()
    pt = np.array([[1100.0, 420.0]])
    official, ours, t_model, o_model = env["official"], env["ours"], env["ours_torch"], env["ours_ort"]
    x = torch.from_numpy(t_model._preprocess(img))
    x_np = x.numpy()
    enc_sess = env["runners"]["image_encoder"].session
    emb: dict[str, Any] = {}

    def click_official() -> Any:
        return official.predict(point_coords=pt, point_labels=np.array([1]), multimask_output=True)

    def click_ours(model: Any, key: str) -> Callable[[], Any]:
        return lambda: model.segment_images(embeddings=emb[key], point_coordinates=pt, point_labels=[1],
                                            multi_mask_output=True)

    cases: dict[str, dict[str, Callable[[], Any]]] = {
        "encoder": {
            "official_torch": lambda: official.set_image(img),
            "ours_torch": lambda: emb.__setitem__("t", t_model.embed_images(img, input_color_format="rgb")[0]),
            "ours_onnxruntime": lambda: emb.__setitem__("o", o_model.embed_images(img, input_color_format="rgb")[0]),
        },
        "encoder_network": {
            "official_torch": lambda: official.model.forward_image(x),
            "ours_torch": lambda: ours.encode_image(x),
            "ours_onnxruntime": lambda: enc_sess.run(None, {"image": x_np}),
        },
        "click": {
            "official_torch": click_official,
            "ours_torch": click_ours(t_model, "t"),
            "ours_onnxruntime": click_ours(o_model, "o"),
        },
    }
    if args.sweep:
        path = env["onnx_dir"] / "image_encoder.onnx"
        for tag, opt in ort_sessions_variants().items():
            s = ort_session(path, args.threads, opt["level"], opt["spin"])
            cases["encoder_network"][f"onnxruntime[{tag}]"] = lambda s=s: s.run(None, {"image": x_np})
    results: dict[str, Any] = {}
    with torch.inference_mode():
        for fn in (*cases["encoder"].values(), *cases["encoder_network"].values()):
            fn()  # warm-up (also fills emb for the click cases)
        for fn in cases["click"].values():
            fn()
        outs = {k: f() for k, f in cases["click"].items()}
        for phase, fns in cases.items():
            times: dict[str, list[float]] = {k: [] for k in fns}
            for _ in range(args.runs):
                for k, fn in fns.items():  # interleaved
                    times[k].append(timed(fn))
            results[phase] = {k: {"median_s": statistics.median(v), "min_s": min(v), "runs_s": v}
                              for k, v in times.items()}
            print(f"  {phase}: " + ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in times.items()),
                  flush=True)
    results["agreement"] = agreement(outs)
    return results


def agreement(outs: dict[str, Any]) -> dict[str, float]:
    """Masks / scores of the click on each backend vs the official predictor (same weights)."""
    ref_masks, ref_scores, _ = outs["official_torch"]
    out = {}
    for k in ("ours_torch", "ours_onnxruntime"):
        pred = outs[k][0]
        masks = np.asarray(pred.masks)
        out[f"{k}_min_mask_iou"] = min(mask_iou(ref_masks[i], masks[i]) for i in range(len(ref_masks)))
        out[f"{k}_max_score_diff"] = float(np.abs(np.asarray(pred.scores) - ref_scores).max())
    return out


def report(results: dict[str, Any], env: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for phase in ("encoder", "encoder_network", "click"):
        ref = results[phase]["official_torch"]["median_s"]
        for k, r in results[phase].items():
            rows.append({"phase": phase, "backend": k, "median_ms": r["median_s"] * 1e3, "min_ms": r["min_s"] * 1e3,
                         "speedup_vs_official": ref / r["median_s"],
                         "speedup_vs_official_min": results[phase]["official_torch"]["min_s"] / r["min_s"]})
    print(f"\n{args.variant}, {args.threads} threads, median of {args.runs} (interleaved)")
    print(f"{'phase':16s} {'backend':30s} {'median ms':>10s} {'min ms':>9s} {'x official':>10s} {'x (min)':>8s}")
    for r in rows:
        print(f"{r['phase']:16s} {r['backend']:30s} {r['median_ms']:10.1f} {r['min_ms']:9.1f} "
              f"{r['speedup_vs_official']:10.2f} {r['speedup_vs_official_min']:8.2f}")
    print("RSS added by loading:", {k: f"{v / 2**20:.0f} MB" for k, v in env["load_rss"].items()})
    print("click agreement with official:", results["agreement"])
    return {"rows": rows, **results}


def memory_child(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """In a fresh process: load one backend, encode + click once; report RSS figures (MB).

    The ONNX Runtime child blocks ``import torch`` (the light runtime) and preprocesses
    with OpenCV; the PyTorch children use the official preprocessing.
    """
    if backend == "ours_onnxruntime":
        sys.modules["torch"] = None  # type: ignore[assignment]  # any torch import now fails
    img = test_image()
    pt = np.array([[1100.0, 420.0]])
    base = rss()
    if backend == "official_torch":  # the official loading path: build_sam2(config, checkpoint file)
        import torch

        torch.set_num_threads(args.threads)
        from tests.torchvision_shim import install

        install()
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        from tests.oracle import official_config_file

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = SAM2ImagePredictor(build_sam2(official_config_file(args.variant), args.checkpoint, device="cpu"))
        loaded = rss()
        model.set_image(img)
        model.predict(point_coords=pt, point_labels=np.array([1]), multimask_output=True)
    else:
        from sam2edge.config import get_config
        from sam2edge.runtime.image.predictor import SAM2

        cfg = get_config(args.variant)
        if backend == "ours_torch":  # our loading path: from_pretrained(checkpoint file)
            import torch

            torch.set_num_threads(args.threads)
            model = SAM2.from_pretrained(args.checkpoint, backend="torch", device="cpu")
        else:
            from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners

            runners = make_onnxruntime_runners(args.onnx_dir, threads=args.threads,
                                               artifacts=["image_encoder", "prompt_decoder"])
            for r in runners.values():
                r.activate()
            model = SAM2(runners, cfg, preprocessing="opencv")
        loaded = rss()
        emb = model.embed_images(img, input_color_format="rgb")[0]
        model.segment_images(embeddings=emb, point_coordinates=pt, point_labels=[1], multi_mask_output=True)
    peak = vm_hwm()
    return {"imports_rss_mb": base / 2**20, "loaded_rss_mb": loaded / 2**20, "peak_rss_mb": peak / 2**20,
            "torch_imported": "torch" in sys.modules and sys.modules["torch"] is not None}


def memory_profile(args: argparse.Namespace, onnx_dir: Path) -> dict[str, Any]:
    import subprocess

    import torch

    from tests.oracle import official_model

    # Both PyTorch children load this checkpoint file (official format, random weights) the way users do.
    ckpt = Path(tempfile.mkdtemp(prefix="sam2edge-bench-")) / f"{args.variant}.pt"
    torch.save({"model": official_model(args.variant, args.seed).state_dict()}, ckpt)
    out = {}
    for backend in ("official_torch", "ours_torch", "ours_onnxruntime"):
        cmd = [sys.executable, __file__, "--memory-child", backend, "--variant", args.variant, "--threads",
               str(args.threads), "--seed", str(args.seed), "--onnx-dir", str(onnx_dir), "--checkpoint", str(ckpt)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if res.returncode != 0:
            raise RuntimeError(f"memory child {backend} failed:\n{res.stderr[-3000:]}")
        out[backend] = json.loads(res.stdout.strip().splitlines()[-1])
        print(f"  memory {backend}: {out[backend]}", flush=True)
    return out


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    import onnxruntime
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "threads": args.threads, "loadavg_start": os.getloadavg(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="sam2.1_hiera_tiny")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--onnx-dir", default=None, help="an existing export of the same weights (else exported here)")
    p.add_argument("--sweep", action="store_true", help="also time ONNX Runtime session variants")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/export_cpu-<variant>.json)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args)))
        return 0
    if args.runs < 5:
        p.error("--runs must be >= 5 (medians of at least five runs)")
    info = machine_info(args)
    env = setup(args)
    results = report(measure(env, args), env, args)
    print("peak memory per backend (fresh process each):", flush=True)
    results["memory"] = memory_profile(args, env["onnx_dir"])
    print(f"{'backend':18s} {'after imports MB':>17s} {'loaded MB':>10s} {'peak MB':>8s}  torch imported")
    for k, m in results["memory"].items():
        print(f"{k:18s} {m['imports_rss_mb']:17.0f} {m['loaded_rss_mb']:10.0f} {m['peak_rss_mb']:8.0f}  "
              f"{m['torch_imported']}")
    info["loadavg_end"] = os.getloadavg()
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"export_cpu-{args.variant}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "export_cpu", "variant": args.variant, "runs": args.runs, "machine": info,
               "load_rss_mb": {k: v / 2**20 for k, v in env["load_rss"].items()}, "onnx_dir": str(env["onnx_dir"]),
               "ort_session": "ORT_ENABLE_ALL, sequential, inter-op 1, intra-op spin-waiting, CPU arena + memory pattern "
               "(OnnxRuntimeRunner defaults)",
               **results}
    out.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
