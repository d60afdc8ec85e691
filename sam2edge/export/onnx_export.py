"""Export the four artifacts to ONNX, verify them in ONNX Runtime, write the manifest.

For each artifact: trace its wrapper (``sam2edge.model.wrappers``) with the spec's
names and dynamic dims, pin the static I/O dims to the spec, check the graph with the
static TensorRT-compatibility check, then run it in ONNX Runtime (CPU) against the same
wrapper in PyTorch on real photographs and random prompts. Any output beyond tolerance
(fp32: 1e-4 on features/embeddings, 1e-3 on logits; 3e-6 of the output's largest value
where that is larger) raises ExportError and nothing is written. The figures go into ``manifest.json``.

Requires torch, onnx and onnxruntime.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam2edge.backends.onnxruntime_runner import OnnxRuntimeRunner
from sam2edge.backends.torch_runner import TorchRunner
from sam2edge.contract.artifacts import (
    BATCH,
    MASK_SIDE,
    NUM_MEMORY_FRAMES,
    NUM_OBJ_PTRS,
    NUM_OBJECTS,
    NUM_POINTS,
    NUM_PROMPTS,
    Tensor,
    tolerance,
)
from sam2edge.contract.edgetam_artifacts import specs_for
from sam2edge.contract.manifest import MANIFEST_NAME, onnx_dir, package_versions, read_manifest, recorded_file, spec_to_dict, write_manifest
from sam2edge.contract.parity import compare_outputs
from sam2edge.contract.spec import ArtifactSpec, Dim
from sam2edge.download import resolve_checkpoint
from sam2edge.errors import EngineMismatchError, ExportError
from sam2edge.export.graph_opt import optimize_for_runtimes
from sam2edge.export.staging import staged_folder
from sam2edge.export.trt_compat import assert_trt_compatible, check_graph
from sam2edge.export.verify_data import verification_cases
from sam2edge.integrity import sha256_file

log = logging.getLogger(__name__)

EXPORTERS = ("legacy", "dynamo")
DEFAULT_EXPORTER = "dynamo"
DEFAULT_OPSET = 18  # the dynamo exporter's lowest; TensorRT 10 parses opsets 9-20
LEGACY_OPSET = 17
MANIFEST_FORMAT = "sam2edge-onnx/1"
Progress = Callable[[str], None]

# Trace-time sizes: distinct and > 1 so no symbolic dim is specialised or conflated.
TRACE_DIMS = {
    BATCH.name: 2, NUM_PROMPTS.name: 3, NUM_POINTS.name: 2, NUM_OBJECTS.name: 2, NUM_MEMORY_FRAMES.name: 3,
    NUM_OBJ_PTRS.name: 5, MASK_SIDE.name: 512,
}


@dataclass(frozen=True)
class ExportSettings:
    exporter: str = DEFAULT_EXPORTER
    opset: int | None = None  # None: 18 for dynamo, 17 for legacy
    threads: int | None = None  # ORT threads for verification
    check_trt: bool = True

    def __post_init__(self) -> None:
        if self.exporter not in EXPORTERS:
            raise ExportError(f"exporter must be one of {EXPORTERS}, got {self.exporter!r}")
        if self.opset is None:
            object.__setattr__(self, "opset", DEFAULT_OPSET if self.exporter == "dynamo" else LEGACY_OPSET)


def export_graph(wrapper: Any, spec: ArtifactSpec, path: Path, settings: ExportSettings) -> None:
    """Trace ``wrapper`` to ``path`` (one self-contained .onnx file, constants folded)."""
    import torch

    feeds = spec.dummy_inputs("opt", seed=0, overrides={n: TRACE_DIMS[n] for n in spec.dims()})
    feeds = {n: _valid_trace_value(n, a) for n, a in feeds.items()}
    args = tuple(torch.from_numpy(feeds[n]) for n in spec.input_names)
    with warnings.catch_warnings(), torch.no_grad(), _quiet_torch_logs():
        warnings.simplefilter("ignore")
        if settings.exporter == "legacy":
            torch.onnx.export(
                wrapper, args, str(path), dynamo=False, opset_version=settings.opset, input_names=spec.input_names,
                output_names=spec.output_names, dynamic_axes=spec.dynamic_axes(), do_constant_folding=True,
            )
        else:
            program = torch.onnx.export(
                wrapper, args, dynamo=True, opset_version=settings.opset, input_names=spec.input_names,
                output_names=spec.output_names, dynamic_shapes=_dynamic_shapes(spec), optimize=True, verbose=False,
            )
            program.save(str(path), external_data=False)
            _fold_weight_constants(path)


@contextlib.contextmanager
def _quiet_torch_logs() -> Iterator[None]:
    """The dynamo exporter logs optional-dependency notices (torchvision ops) at WARNING."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fold_weight_constants(path: Path) -> None:
    """Fold what the dynamo exporter's optimiser leaves unfolded because of its size limits
    (e.g. Unsqueeze of a Linear weight feeding a 1x1 Conv: TensorRT wants Conv weights constant)."""
    import onnx
    import onnxscript.optimizer

    model = onnxscript.optimizer.optimize(onnx.load(str(path)), input_size_limit=1 << 30, output_size_limit=1 << 30)
    onnx.save(model, str(path))


def _valid_trace_value(name: str, arr: np.ndarray) -> np.ndarray:
    if name == Tensor.MEMORY_TPOS:  # indices into the 7-row temporal table
        return np.arange(arr.shape[0], dtype=arr.dtype) % 7
    return arr


def _dynamic_shapes(spec: ArtifactSpec) -> dict[str, Any]:
    from torch.export import Dim as TorchDim

    dims = {n: TorchDim(n, min=d.min, max=d.max) for n, d in spec.dims().items()}
    return {t.name: ({i: dims[n] for i, n in t.dynamic.items()} or None) for t in spec.inputs}


def finalize_graph(path: Path, spec: ArtifactSpec) -> tuple[Any, dict[str, int]]:
    """Apply the exact fusion-friendly rewrites (graph_opt), pin graph I/O dims to the spec
    (static ints, spec dim names), check and save in place. Returns (model, rewrite counts)."""
    import onnx


    model = onnx.load(str(path))
    rewrites = optimize_for_runtimes(model)
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    for vi, t in (*zip(graph_inputs, spec.inputs), *zip(model.graph.output, spec.outputs)):
        if vi.name != t.name:
            raise ExportError(f"{spec.name}: exported tensor {vi.name!r} where the spec has {t.name!r}")
        dims = vi.type.tensor_type.shape.dim
        if len(dims) != len(t.shape):
            raise ExportError(f"{spec.name}: {t.name!r} exported with rank {len(dims)}, spec has {len(t.shape)}")
        for d, want in zip(dims, t.shape):
            if isinstance(want, Dim):
                d.dim_param = want.name
            else:
                d.dim_value = int(want)
    model.graph.name = spec.name
    model.doc_string = spec.doc
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return model, rewrites


def verify_artifact(
    wrapper: Any, spec: ArtifactSpec, path: Path, cases: Sequence[dict[str, np.ndarray]], threads: int | None = None
) -> dict[str, Any]:
    """Run ``path`` in ONNX Runtime (CPU) and ``wrapper`` in PyTorch on every case.

    Returns {"max_abs": {output: worst diff}, "tolerance": {...}, "reference_max_abs": {output:
    largest |value| of the PyTorch output}, "cases": [bound dims per case]};
    raises ExportError naming every output beyond its tolerance.
    """

    ort_runner = OnnxRuntimeRunner(spec, path, threads=threads)
    torch_runner = TorchRunner(spec, wrapper)
    worst = dict.fromkeys(spec.output_names, 0.0)
    scale = dict.fromkeys(spec.output_names, 0.0)
    shapes = []
    with ort_runner:
        for feeds in cases:
            bound = spec.check_inputs(feeds)
            ref = torch_runner.infer(feeds, check=False)
            diffs = compare_outputs(ref, ort_runner.infer(feeds, check=False), spec.output_names)
            worst = {n: max(worst[n], diffs[n]["max_abs_diff"]) for n in worst}
            scale = {n: max(scale[n], float(np.abs(ref[n]).max(initial=0.0))) for n in scale}
            shapes.append(bound)
    tol = {n: tolerance(spec, n, scale[n]) for n in spec.output_names}
    bad = {n: d for n, d in worst.items() if not d <= tol[n]}
    result = {"max_abs": worst, "tolerance": tol, "reference_max_abs": scale, "cases": shapes,
              "runtime": "onnxruntime CPUExecutionProvider fp32"}
    if bad:
        detail = ", ".join(f"{n}: {d:.3g} > {tol[n]:g}" for n, d in bad.items())
        raise ExportError(f"{spec.name}: ONNX Runtime output differs from PyTorch beyond tolerance ({detail})")
    return result


def export_artifact(
    model: Any, name: str, out_dir: Path, settings: ExportSettings, cases: Sequence[dict[str, np.ndarray]],
    progress: Progress, export_form: Any = None,
) -> dict[str, Any]:
    """Export, check and verify one artifact into ``out_dir/<name>.onnx``; its manifest entry."""
    from sam2edge.model.wrappers import build_wrapper

    spec = specs_for(model.cfg)[name]
    wrapper = build_wrapper(name, model)
    path = out_dir / f"{name}.onnx"
    t0 = time.perf_counter()
    progress(f"[{name}] exporting ({settings.exporter}, opset {settings.opset})")
    # The graph holds the model's export form (EdgeTAM: RepViT re-parameterised into plain convolutions);
    # verification runs the model as loaded, so it checks the re-parameterisation too.
    traced = wrapper if export_form is None or export_form is model else build_wrapper(name, export_form)
    export_graph(traced, spec, path, settings)
    graph, rewrites = finalize_graph(path, spec)
    t_export = time.perf_counter() - t0
    compat = (assert_trt_compatible if settings.check_trt else check_graph)(graph, spec)
    progress(f"[{name}] {len(graph.graph.node)} nodes, {path.stat().st_size / 1e6:.1f} MB, "
             f"TensorRT-parser check {'passed' if compat.ok else 'FAILED'}; verifying on {len(cases)} cases")
    t1 = time.perf_counter()
    parity = verify_artifact(wrapper, spec, path, cases, settings.threads)
    worst = ", ".join(f"{n} {d:.2e}" for n, d in parity["max_abs"].items())
    progress(f"[{name}] verified in {time.perf_counter() - t1:.1f}s: max |onnx - torch| {worst}")
    return {
        "file": path.name, "sha256": sha256_file(path), "size": path.stat().st_size, "nodes": len(graph.graph.node),
        "export_seconds": round(t_export, 2), "graph_rewrites": rewrites, "spec": spec_to_dict(spec), "parity": parity,
        "trt_compat": compat.as_dict(),
    }


def export_model(
    model: Any,
    out_dir: str | os.PathLike,
    checkpoint: dict[str, Any],
    artifacts: Sequence[str] | None = None,
    settings: ExportSettings | None = None,
    progress: Progress | None = None,
    images: Sequence[np.ndarray] | None = None,
) -> Path:
    """Export ``artifacts`` (default all four) of a loaded SAM2Model into ``out_dir``.

    ``checkpoint`` = {"path": ..., "sha256": ...} is recorded. Everything (the new artifacts,
    the artifacts an existing export of the same checkpoint keeps, the manifest) is written to a
    staging folder beside ``out_dir`` and swapped into place only after every artifact verified:
    an interrupted export (an error, Ctrl-C, SIGTERM) leaves ``out_dir`` as it was and no staging
    files behind. Returns the manifest path.
    """

    settings = settings or ExportSettings()
    progress = progress or log.info
    specs = specs_for(model.cfg)
    names = list(artifacts or specs)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise ExportError(f"unknown artifacts {unknown}; choose from {list(specs)}")
    out_dir = Path(out_dir)
    model = model.eval()
    entries = {}
    with staged_folder(out_dir) as stage:
        progress(f"preparing verification data ({model.cfg.name})")
        cases = verification_cases(model, names, images=images)
        export_form = model.export_form() if hasattr(model, "export_form") else None
        for name in names:
            entries[name] = export_artifact(model, name, stage, settings, cases[name], progress, export_form)
        previous = {n: e for n, e in _previous_entries(out_dir, checkpoint.get("sha256"), read_manifest).items()
                    if n not in entries}
        for entry in previous.values():  # kept artifacts of an earlier export of this checkpoint
            _link_or_copy(out_dir / entry["file"], stage / entry["file"])
        all_entries = {**previous, **entries}
        manifest = manifest_header(model, checkpoint, settings)
        manifest["artifacts"] = {n: all_entries[n] for n in specs if n in all_entries}
        manifest["files"] = {e["file"]: {"sha256": e["sha256"], "size": e["size"]} for e in manifest["artifacts"].values()}
        write_manifest(stage, manifest)
    progress(f"wrote {out_dir / MANIFEST_NAME}")
    return out_dir / MANIFEST_NAME


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def manifest_header(model: Any, checkpoint: dict[str, Any], settings: ExportSettings) -> dict[str, Any]:
    """Everything in manifest.json except the per-artifact entries."""

    cfg = model.cfg
    exporter = "torch.onnx (TorchScript, dynamo=False)" if settings.exporter == "legacy" else "torch.onnx (dynamo)"
    return {
        "format": MANIFEST_FORMAT,
        "variant": cfg.name,
        "version": cfg.version,
        "size": cfg.size,
        "checkpoint_sha256": checkpoint.get("sha256"),
        "checkpoint": dict(checkpoint),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "exporter": {"name": settings.exporter, "description": exporter, "opset": settings.opset,
                     "constant_folding": True},
        "versions": package_versions("torch", "onnx", "onnxruntime", "onnxscript", "numpy"),
        "config": host_config(cfg),
        "host_constants": host_constants(model),
    }


def host_config(cfg: Any) -> dict[str, Any]:
    """The configuration values the host-side predictor and tracker need."""
    keys = ("image_size", "num_maskmem", "max_obj_ptrs_in_encoder", "sigmoid_scale_for_mem_enc",
            "sigmoid_bias_for_mem_enc", "add_tpos_enc_to_obj_ptrs", "use_signed_tpos_enc_to_obj_ptrs",
            "no_obj_embed_spatial", "dynamic_multimask_via_stability", "dynamic_multimask_stability_delta",
            "dynamic_multimask_stability_thresh")
    return {k: getattr(cfg, k) for k in keys if hasattr(cfg, k)}


def host_constants(model: Any) -> dict[str, Any]:
    """Small weights that mask-input video frames need on the host (exact fp32 values as JSON floats):
    ``no_obj_ptr`` [256] and the 4x4/s4 ``mask_downsample`` conv (weight [4][4], bias) that turns a
    1024x1024 mask into the decoder's 256x256 mask input."""
    t = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()
         if k in ("no_obj_ptr", "mask_downsample.weight", "mask_downsample.bias")}
    return {
        "no_obj_ptr": t["no_obj_ptr"].reshape(-1).tolist(),
        "mask_downsample_weight": t["mask_downsample.weight"].reshape(4, 4).tolist(),
        "mask_downsample_bias": float(t["mask_downsample.bias"].reshape(-1)[0]),
    }


def _previous_entries(out_dir: Path, sha: str | None, read: Callable) -> dict[str, Any]:
    if not (out_dir / MANIFEST_NAME).is_file():
        return {}
    try:
        old = read(out_dir)
    except Exception:  # an unreadable manifest is simply replaced
        return {}
    if old.get("checkpoint_sha256") != sha:
        return {}
    kept = {}
    for name, entry in (old.get("artifacts") or {}).items():
        try:  # a kept file must still be inside the folder and what its entry records
            recorded_file(out_dir, entry, f"{name}.onnx", f"{name} ONNX file").check()
        except EngineMismatchError:
            continue
        kept[name] = entry
    return kept


def export_checkpoint(
    checkpoint: str | os.PathLike,
    root: str | os.PathLike | None = None,
    artifacts: Sequence[str] | None = None,
    settings: ExportSettings | None = None,
    progress: Progress | None = None,
    out_dir: str | os.PathLike | None = None,
) -> Path:
    """``sam2edge export``: a checkpoint path or variant name -> ``<root>/<variant>-<sha8>/onnx``.

    Returns the onnx folder. ``out_dir`` overrides the store layout.
    """
    import torch

    from sam2edge.model import build_model
    from sam2edge.model.checkpoint import load_checkpoint

    progress = progress or log.info
    path = resolve_checkpoint(checkpoint)
    progress(f"hashing {path}")
    sha = sha256_file(path)
    state, cfg = load_checkpoint(path)
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    del state
    target = Path(out_dir) if out_dir else onnx_dir(root, cfg.name, sha)
    progress(f"{cfg.name} (checkpoint {sha[:8]}) -> {target}")
    with torch.no_grad():
        export_model(model, target, {"path": str(path), "sha256": sha}, artifacts, settings, progress)
    return target
