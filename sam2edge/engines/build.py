"""``sam2edge build``: one engine per artifact for *this* device, into the store, verified.

Steps per artifact: check the ONNX file against its manifest, derive the precision policy
and the optimisation profile, build (:func:`sam2edge.engines.tensorrt.build_plan`) reusing the
device's timing cache, write the plan atomically, read the context's device memory back.
Then the verification against ONNX Runtime fp32 on real images, inside the profiles just built,
and only when it passes, the manifest (fingerprint, hashes, profiles, memory, policy, figures, the
rebuild command): a folder without a manifest is never listed, so an engine set that failed its
verification (or a build that stopped half-way) is never selected. An earlier manifest in the same
folder is removed before its engine files are overwritten.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sam2edge.backends import lazy, registry
from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners
from sam2edge.backends.tensorrt_runner import TrtEngine
from sam2edge.contract.artifacts import Tensor
from sam2edge.contract.manifest import MANIFEST_NAME, package_versions, write_manifest
from sam2edge.engines import tensorrt as trtb
from sam2edge.engines.fingerprint import (
    DeviceDescription,
    EngineFingerprint,
    Installed,
    engine_fingerprint,
    probe_device,
    probe_installed,
)
from sam2edge.engines.store import ENGINE_FORMAT, ArtifactStore, EngineSet, OnnxSet, rebuild_command
from sam2edge.engines.verify import sample_images, verify
from sam2edge.errors import BackendRuntimeError, EngineBuildError, EngineMismatchError, InputError
from sam2edge.integrity import sha256_file


def timing_cache_seed(store: ArtifactStore, fingerprint: EngineFingerprint) -> tuple[bytes, Path | None]:
    """The newest timing cache of any earlier build for the same device slug (any model/precision)."""
    slug = fingerprint.slug()
    caches = sorted(store.root.glob(f"*/tensorrt/*/{slug}/timing.cache"), key=lambda p: p.stat().st_mtime)
    return (caches[-1].read_bytes(), caches[-1]) if caches else (b"", None)


def check_onnx_file(onnx: OnnxSet, name: str) -> tuple[Path, str]:
    path = onnx.artifact_path(name)
    if not path.is_file():
        raise EngineMismatchError(f"{path} is missing; re-run `sam2edge export`")
    sha = sha256_file(path)
    want = onnx.file_sha256(name)
    if want is not None and want != sha:
        raise EngineMismatchError(f"{path} differs from its manifest (sha256 {sha[:12]}, want {want[:12]}); re-export")
    return path, sha


def build_engines(onnx: OnnxSet, *, store: ArtifactStore, precision: str = "fp16",
                  workspace: int = trtb.DEFAULT_WORKSPACE, limits: Mapping[str, int] | None = None,
                  artifacts: Sequence[str] | None = None, verify: bool = True, say: Any = print,
                  build_args: Mapping[str, Any] | None = None,
                  described: tuple[DeviceDescription, Installed] | None = None) -> EngineSet:
    """Build, record and verify the engine set of ``onnx`` for GPU 0 of this machine."""
    trt = lazy.import_tensorrt()
    device, installed = described or (probe_device(), probe_installed(check_providers=False))
    fingerprint = engine_fingerprint(device, installed)
    if fingerprint is None:
        raise EngineBuildError("no CUDA GPU here: engines are built on the device that will run them "
                               f"({'; '.join(device.notes) or 'no GPU reported'})")
    limits = dict(limits or {})
    specs = onnx.specs
    names = trtb.artifact_order(list(artifacts or specs))
    out_dir = store.engine_dir(onnx, precision, fingerprint)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)  # its engine files are about to change
    cache, seeded = timing_cache_seed(store, fingerprint)
    say(f"building {len(names)} {precision} engines for {onnx.variant} on {fingerprint.gpu_name} "
        f"(TensorRT {trt.__version__}) -> {out_dir}")
    if seeded:
        say(f"reusing timing cache {seeded}")
    records = {}
    for i, name in enumerate(names, 1):
        spec = specs[name]
        onnx_path, onnx_sha = check_onnx_file(onnx, name)
        policy = trtb.load_policy(onnx_path, name, precision)
        say(f"[{i}/{len(names)}] {name}: profile {trtb.profile_for(spec, limits)}")
        t0 = time.monotonic()
        plan, cache = trtb.build_plan(onnx_path, trtb.profile_for(spec, limits), precision, policy, workspace, cache, say)
        trtb.write_atomic(out_dir / f"{name}.engine", plan)
        trtb.write_atomic(out_dir / "timing.cache", cache)
        seconds = time.monotonic() - t0
        memory = TrtEngine(plan, label=name).device_memory_bytes
        records[name] = trtb.engine_record(name, plan, onnx_path, onnx_sha, spec, limits, policy, memory)
        records[name]["build_seconds"] = round(seconds, 3)
        say(f"  {name}: {len(plan) / 2**20:.1f} MiB plan, {memory / 2**20:.1f} MiB context memory, {seconds:.0f}s")
    manifest = {
        "format": ENGINE_FORMAT, "variant": onnx.variant, "checkpoint_sha256": onnx.checkpoint_sha256,
        "precision": precision, "fingerprint": fingerprint.to_dict(), "onnx_dir": str(onnx.dir),
        "onnx_manifest_sha256": sha256_file(onnx.dir / MANIFEST_NAME), "workspace_bytes": int(workspace),
        "limits": limits, "artifacts": records, "timing_cache": "timing.cache",
        "rebuild_command": rebuild_command(onnx.dir, precision, dict(build_args or {})),
        "versions": package_versions("tensorrt", "onnxruntime", "cuda-python", "cuda-bindings", "torch"),
        "jetson": device.jetson.__dict__ if device.jetson else None,
    }
    if verify:
        manifest["verification"] = verify_engine_set(store, EngineSet(out_dir, manifest), onnx, names, say)
    write_manifest(out_dir, manifest)
    return EngineSet(out_dir, manifest)


def verify_engine_set(store: ArtifactStore, engines: EngineSet, onnx: OnnxSet, names: Sequence[str],
                      say: Any = print) -> dict[str, Any]:
    """TensorRT vs ONNX Runtime fp32 on real images, inside the engines' profiles; figures per artifact
    (see engines.verify). EngineBuildError when the engines fail to run or give non-finite differences."""

    images, source = sample_images()
    dims = {name: info.get("dims", {}) for name, info in engines.artifacts.items()}
    reference = make_onnxruntime_runners(onnx.dir, providers=["CPUExecutionProvider"])
    say(f"verifying against ONNX Runtime fp32 on {len(images)} {source} ...")
    candidate: dict[str, Any] = {}
    try:
        candidate = registry.create_runners("tensorrt", store.runner_sources(onnx, engines), "cuda:0", names)
        figures = verify(candidate, reference, images, names, dims=dims)
    except (BackendRuntimeError, EngineMismatchError, InputError) as exc:
        raise EngineBuildError(f"verification of the engines in {engines.dir} failed, so they get no manifest "
                               f"and will not be used: {exc}") from exc
    finally:
        for r in (*candidate.values(), *reference.values()):
            r.deactivate()
    for name, outs in figures.items():
        masks = outs.get(Tensor.MASKS, {})
        extra = f", mask IoU mean {masks['mask_iou_mean']:.4f} min {masks['mask_iou_min']:.4f}" if masks else ""
        worst = max(v["max_abs_diff"] for v in outs.values())
        say(f"  {name}: max abs diff {worst:.3g}{extra}")
        if not math.isfinite(worst):
            raise EngineBuildError(f"verification of {name} in {engines.dir} failed: non-finite or misshapen outputs "
                                   f"(max abs diff {worst}); the engines get no manifest and will not be used")
    return {"reference": "onnxruntime fp32 (CPUExecutionProvider)", "images": source, "figures": figures}
