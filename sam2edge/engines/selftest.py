"""The GPU self-test behind ``sam2edge doctor --self-test``: build, verify and time every artifact on this
device, one row per (artifact, precision), as a Markdown table to paste into an issue.

Each precision is built with :func:`sam2edge.engines.build.build_engines` (verification included, so a
row is OK only when the engines passed it), then every engine is timed through the TensorRT runner on
the verification inputs: one warm-up call, then ``runs`` timed calls (median and 90th percentile).
A failed build or verification is a FAILED row with the first line of the error, and the rest goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sam2edge.backends import lazy, registry
from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners
from sam2edge.contract.artifacts import Tensor
from sam2edge.engines import tensorrt as trtb
from sam2edge.engines.build import build_engines
from sam2edge.engines.fingerprint import DeviceDescription, Installed, engine_fingerprint
from sam2edge.engines.store import ArtifactStore, EngineSet, OnnxSet
from sam2edge.engines.verify import sample_images, verification_feeds
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError, EngineBuildError, EngineMismatchError, InputError

FAILURES = (EngineBuildError, EngineMismatchError, BackendRuntimeError, BackendUnavailableError, InputError)
COLUMNS = ("artifact", "precision", "status", "build s", "plan MiB", "context MiB", "max abs diff", "mask IoU min",
           "median ms", "p90 ms")


@dataclass
class Row:
    artifact: str
    precision: str
    status: str = "OK"
    build_s: float | None = None
    plan_mib: float | None = None
    context_mib: float | None = None
    max_abs_diff: float | None = None
    mask_iou_min: float | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    note: str = ""

    def cells(self) -> list[str]:
        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        return [self.artifact, self.precision, self.status + (f": {self.note}" if self.note else ""), num(self.build_s, ".1f"),
                num(self.plan_mib, ".1f"), num(self.context_mib, ".1f"), num(self.max_abs_diff, ".3g"),
                num(self.mask_iou_min, ".4f"), num(self.median_ms, ".2f"), num(self.p90_ms, ".2f")]


def run_self_test(onnx: OnnxSet, store: ArtifactStore, described: tuple[DeviceDescription, Installed],
                  precisions: Sequence[str] = ("fp32", "fp16"), artifacts: Sequence[str] | None = None,
                  runs: int = 20, say: Callable[[str], None] = print) -> list[Row]:
    """Rows of (artifact, precision): build + verification figures + timings (see the module doc)."""
    names = trtb.artifact_order(list(artifacts or onnx.manifest.get("artifacts", {}) or []))
    rows: list[Row] = []
    for precision in precisions:
        try:
            engines = build_engines(onnx, store=store, precision=precision, artifacts=names, say=say, described=described)
            timings = time_engines(store, onnx, engines, names, runs)
        except FAILURES as exc:
            note = str(exc).strip().splitlines()[0][:160]
            rows += [Row(name, precision, "FAILED", note=note) for name in names]
            continue
        for name in names:
            rows.append(_row(engines, name, precision, timings[name]))
    return rows


def _row(engines: EngineSet, name: str, precision: str, times_ms: list[float]) -> Row:
    info = engines.artifacts[name]
    figures = engines.manifest.get("verification", {}).get("figures", {}).get(name, {})
    worst = max((f["max_abs_diff"] for f in figures.values()), default=None)
    masks = figures.get(Tensor.MASKS, {})
    return Row(name, precision, build_s=info.get("build_seconds"), plan_mib=int(info["size"]) / 2**20,
               context_mib=(info.get("device_memory_bytes") or 0) / 2**20, max_abs_diff=worst,
               mask_iou_min=masks.get("mask_iou_min"), median_ms=float(np.median(times_ms)),
               p90_ms=float(np.percentile(times_ms, 90)))


def time_engines(store: ArtifactStore, onnx: OnnxSet, engines: EngineSet, names: Sequence[str],
                 runs: int) -> dict[str, list[float]]:
    """Milliseconds of ``runs`` calls of each engine (after one warm-up) on the first verification input."""
    images, _ = sample_images(1)
    reference = make_onnxruntime_runners(onnx.dir, providers=["CPUExecutionProvider"])
    dims = {name: info.get("dims", {}) for name, info in engines.artifacts.items()}
    jobs = {name: feeds for name, feeds, _ in verification_feeds(images, reference, names, dims)}
    runners = registry.create_runners("tensorrt", store.runner_sources(onnx, engines), "cuda:0", names)
    out: dict[str, list[float]] = {}
    try:
        for name in names:
            runners[name].infer(jobs[name])
            times = []
            for _ in range(max(runs, 1)):
                t0 = time.perf_counter()
                runners[name].infer(jobs[name])
                times.append((time.perf_counter() - t0) * 1e3)
            out[name] = times
    finally:
        for r in (*runners.values(), *reference.values()):
            r.deactivate()
    return out


def format_report(rows: Sequence[Row], device: DeviceDescription, installed: Installed, variant: str, runs: int) -> str:
    """The header (machine, versions) and the Markdown table."""
    gpu = device.gpu(0)
    fp = engine_fingerprint(device, installed)
    trt = lazy.loaded("tensorrt")
    lines = [
        f"sam2edge self-test: {variant} on {gpu.name if gpu else 'no GPU'} (compute {gpu.compute_capability if gpu else '-'})",
        f"TensorRT {getattr(trt, '__version__', installed.tensorrt)}, CUDA driver {device.cuda_driver_version}, "
        f"CUDA runtime {installed.cuda_runtime}, TensorRT built for CUDA {installed.tensorrt_cuda or '?'}, "
        f"engine slug {fp.slug() if fp else '-'}",
        f"timings: TensorRT runner, numpy in/out (host copies included), median of {runs} calls after one warm-up",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)
