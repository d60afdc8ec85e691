"""EdgeTAM's RepViT-M1 trunk: timm's module (what the official code builds) vs ours, CPU, fp32.

Run it with the EdgeTAM oracle venv's interpreter (it has timm; make it with
scripts/edgetam_oracle_env.sh):

    .venv-edgetam/bin/python benchmarks/edgetam_trunk.py --runs 5 [--size 1024]

Same random weights in all four (ours are copied into timm's module by name: the state-dict
keys are identical), BatchNorm statistics calibrated as in sam2edge.model.testing.randomize_model:

* timm: ``create_model("repvit_m1", features_only=True, out_indices=(0, 1, 2, 3))``;
* timm fused: the same after timm's own ``fuse()`` on every child that has one;
* ours: ``sam2edge.model.repvit.RepViTTrunk`` as loaded from a checkpoint;
* ours reparameterised: after ``sam2edge.model.repvit.reparameterize``.

Interleaved within every repetition, medians (and minima) of ``--runs``; outputs compared level by
level; the cost of importing timm measured in a fresh interpreter. Writes a table and JSON
(benchmarks/results/edgetam_trunk.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timm_trunk():
    from tests.edgetam.torchvision_standin import install

    install()
    from timm.models import create_model

    return create_model("repvit_m1", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3)).eval()


def timm_fuse(module):
    """timm's RepVit.fuse() recursion, applied to the feature extractor (which has no fuse() of its own)."""
    for name, child in list(module.named_children()):
        if hasattr(child, "fuse"):
            fused = child.fuse()
            setattr(module, name, fused)
            timm_fuse(fused)
        else:
            timm_fuse(child)
    return module


def import_seconds(statement: str) -> float:
    """Seconds ``statement`` takes in a fresh interpreter where torch is already imported."""
    code = (f"import sys, time, torch; sys.path.insert(0, {str(ROOT)!r}); t = time.perf_counter(); {statement}; "
            "print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import copy

    import torch

    from sam2edge.model import build_model
    from sam2edge.model.repvit import reparameterize
    from sam2edge.model.testing import randomize_model

    torch.set_num_threads(args.threads)
    ours = randomize_model(build_model("edgetam"), seed=0).image_encoder.trunk.eval()
    theirs = timm_trunk()
    theirs.load_state_dict(ours.body.state_dict(), strict=True)
    trunks = {
        "timm": theirs,
        "timm fused": timm_fuse(copy.deepcopy(theirs)).eval(),
        "ours": ours,
        "ours reparameterised": reparameterize(copy.deepcopy(ours)).eval(),
    }
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        outs = {name: [t.clone() for t in m(x)] for name, m in trunks.items()}  # also warms up
        times: dict[str, list[float]] = {name: [] for name in trunks}
        for _ in range(args.runs):
            for name, m in trunks.items():
                t0 = time.perf_counter()
                m(x)
                times[name].append(time.perf_counter() - t0)

    def worst(a: str, b: str) -> float:
        return max(float((u - v).abs().max()) for u, v in zip(outs[a], outs[b]))

    parity = {
        "ours vs timm": worst("ours", "timm"),
        "ours reparameterised vs timm fused": worst("ours reparameterised", "timm fused"),
        "ours reparameterised vs ours": worst("ours reparameterised", "ours"),
        "timm fused vs timm": worst("timm fused", "timm"),
    }
    imports = {"import timm (+ torchvision stand-in), after torch": import_seconds(
        "from tests.edgetam.torchvision_standin import install; install(); import timm"),
        "import sam2edge.model.repvit, after torch": import_seconds("import sam2edge.model.repvit")}
    base = statistics.median(times["timm"])
    print(f"RepViT-M1 trunk, {args.size}x{args.size}, batch 1, {args.threads} threads, torch {torch.__version__}, "
          f"{args.runs} interleaved runs")
    print(f"{'trunk':24s} {'median s':>9s} {'min s':>7s} {'vs timm':>8s}")
    for name, ts in times.items():
        print(f"{name:24s} {statistics.median(ts):9.3f} {min(ts):7.3f} {statistics.median(ts) / base:8.2f}")
    for k, v in parity.items():
        print(f"max |diff| {k}: {v:.2e}")
    for k, v in imports.items():
        print(f"{k}: {v:.2f} s")
    out = ROOT / "benchmarks" / "results" / "edgetam_trunk.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "size": args.size, "threads": args.threads, "runs": args.runs, "torch": torch.__version__,
        "machine": platform.platform(), "seconds": times, "median_s": {k: statistics.median(v) for k, v in times.items()},
        "max_abs_diff": parity, "import_s": imports,
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
