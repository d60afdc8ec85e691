"""TensorRT engine build: profiles from the specs, timing cache, precision policy, verification.

The TensorRT calls are one thin function (:func:`build_plan`) written against the documented
Python API of TensorRT 10.x and 11.x:

* 10.x (weak typing): ``BuilderFlag.FP16``/``BF16`` plus the precision policy applied as
  ``layer.precision``/``set_output_type(fp32)`` with ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS``;
* 11.x (strong typing only; the FP16/BF16/OBEY flags and per-layer precision are gone): the ONNX
  graph is first converted to mixed precision with ModelOpt AutoCast (into a temporary folder, never
  into the ONNX store), excluding the same policy nodes, and the network is strongly typed.

A timing cache TensorRT rejects (another device or version) is replaced by a new one, never dropped.

Everything else (profiles, policy, trtexec lines, manifest) is plain data, testable without
TensorRT. Engines go to ``<model>/tensorrt/<precision>/<device-slug>/`` with a manifest.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam2edge.backends import lazy
from sam2edge.backends.tensorrt_runner import trt_logger
from sam2edge.contract.artifacts import BATCH, NUM_MEMORY_FRAMES, NUM_OBJ_PTRS, NUM_OBJECTS, NUM_POINTS, NUM_PROMPTS, Artifact
from sam2edge.contract.spec import ArtifactSpec
from sam2edge.engines.precision import PrecisionPolicy, precision_policy
from sam2edge.errors import EngineBuildError

# Command-line limits -> the spec dims they bound.
LIMIT_DIMS = {
    "max_batch": (BATCH.name, NUM_OBJECTS.name),
    "max_prompts": (NUM_PROMPTS.name,),
    "max_points": (NUM_POINTS.name,),
    "max_memory_frames": (NUM_MEMORY_FRAMES.name,),
    "max_obj_ptrs": (NUM_OBJ_PTRS.name,),
}
DEFAULT_WORKSPACE = 4 << 30
TRT_DTYPES = {"fp16": "half", "bf16": "bf16"}
Printer = Callable[[str], None]


def limits_from_options(**options: int | None) -> dict[str, int]:
    """``max_batch=4, max_points=8`` -> ``{"batch": 4, "num_objects": 4, "num_points": 8}``."""
    limits: dict[str, int] = {}
    for key, value in options.items():
        if value is None:
            continue
        if key not in LIMIT_DIMS:
            raise ValueError(f"unknown limit {key!r}; known: {sorted(LIMIT_DIMS)}")
        if int(value) < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
        for dim in LIMIT_DIMS[key]:
            limits[dim] = int(value)
    return limits


def dims_for(spec: ArtifactSpec, limits: Mapping[str, int]) -> dict[str, dict[str, int]]:
    """Each symbolic dim of ``spec`` as {min, opt, max} with the limits applied (min/opt clamped)."""
    out = {}
    for name, d in spec.dims().items():
        d = d.with_max(limits[name]) if name in limits else d
        out[name] = {"min": d.min, "opt": d.opt, "max": d.max}
    return out


def profile_for(spec: ArtifactSpec, limits: Mapping[str, int]) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Optimisation profile: input name -> (min, opt, max) shapes."""
    return spec.profile(dims_for(spec, limits))  # type: ignore[arg-type]


def io_bytes(spec: ArtifactSpec, limits: Mapping[str, int]) -> int:
    """Bytes of every input and output at the profile maximum (the runner's device buffers)."""
    dims = {name: rng["max"] for name, rng in dims_for(spec, limits).items()}
    return int(sum(np.prod(t.shape_at("max", dims)) * np.dtype(t.dtype).itemsize for t in (*spec.inputs, *spec.outputs)))


def _shape_arg(profile: Mapping[str, tuple[tuple[int, ...], ...]], which: int) -> str:
    return ",".join(f"{name}:{'x'.join(str(s) for s in shapes[which])}" for name, shapes in profile.items())


def trtexec_command(onnx_path: Path, engine_path: Path, spec: ArtifactSpec, precision: str, limits: Mapping[str, int],
                    workspace: int = DEFAULT_WORKSPACE, policy: PrecisionPolicy | None = None,
                    timing_cache: Path | None = None, trt_major: int = 10) -> str:
    """The trtexec line equivalent to ``sam2edge build`` for one artifact."""
    profile = profile_for(spec, limits)
    args = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if spec.dims():
        args += [f"--minShapes={_shape_arg(profile, 0)}", f"--optShapes={_shape_arg(profile, 1)}",
                 f"--maxShapes={_shape_arg(profile, 2)}"]
    args.append(f"--memPoolSize=workspace:{max(workspace >> 20, 1)}M")
    if timing_cache is not None:
        args.append(f"--timingCacheFile={timing_cache}")
    if precision == "fp32":
        args.append("--noTF32")
    else:
        if trt_major >= 11:
            args.append("--stronglyTyped")  # onnx_path must then be the mixed-precision graph
        else:
            args.append(f"--{precision}")
            if policy is not None and policy.keep_fp32:
                args.append("--precisionConstraints=obey")
                args.append("--layerPrecisions=" + ",".join(f"{n}:fp32" for n in policy.node_names))
                args.append("--layerOutputTypes=" + ",".join(f"{n}:fp32" for n in policy.node_names))
    return shlex.join(args)


def load_policy(onnx_path: Path, artifact: str, precision: str) -> PrecisionPolicy:
    """The precision policy of one exported graph (reads the graph structure, not the weights)."""
    onnx = lazy.import_onnx("the precision policy")
    return precision_policy(onnx.load(str(onnx_path), load_external_data=False), artifact, precision)


def mixed_precision_onnx(onnx_path: Path, out_path: Path, precision: str, policy: PrecisionPolicy) -> Path:
    """TensorRT 11: a mixed-precision copy of the graph (ModelOpt AutoCast), policy nodes kept fp32.

    ``data_max=inf`` skips AutoCast's reference run (ModelOpt, autocast/convert.py: the run happens only for a
    finite ``data_max``), which marks every intermediate tensor as an output and runs the graph on random
    data: many GB for the encoder, and needless, since the policy has already chosen the fp32 nodes.
    ``out_path`` must be outside the ONNX store (read-only, hashed by its manifest); the weights go to an
    external-data file beside it, so graphs over protobuf's 2 GB limit convert too.
    """
    onnx = lazy.import_onnx("mixed-precision graphs")
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as exc:
        raise EngineBuildError(
            f"TensorRT 11 builds {precision} engines from a mixed-precision ONNX graph (strong typing): "
            "pip install 'nvidia-modelopt[onnx]', or build --precision fp32"
        ) from exc
    model = convert_to_mixed_precision(
        onnx_path=str(onnx_path), low_precision_type=precision, keep_io_types=True, data_max=float("inf"),
        nodes_to_exclude=[f"^{re.escape(n)}$" for n in policy.node_names],
    )
    onnx.save(model, str(out_path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"{out_path.name}.data")
    return out_path


def build_plan(onnx_path: Path, profile: Mapping[str, tuple[tuple[int, ...], ...]], precision: str,
               policy: PrecisionPolicy, workspace: int, timing_cache: bytes, say: Printer,
               verbose: bool = False) -> tuple[bytes, bytes]:
    """Parse + build one engine. Returns (serialized plan, updated timing cache)."""
    trt = lazy.import_tensorrt("building TensorRT engines")
    strong = strongly_typed(trt)
    with tempfile.TemporaryDirectory(prefix="sam2edge-trt-") as tmp:
        if strong and precision != "fp32":
            onnx_path = mixed_precision_onnx(onnx_path, Path(tmp) / f"{onnx_path.stem}.{precision}.onnx", precision, policy)
        return _build(trt, onnx_path, profile, precision, policy, workspace, timing_cache, say, verbose, strong)


def strongly_typed(trt: Any) -> bool:
    """TensorRT 11 networks are always strongly typed (the weak-typing builder flags are gone)."""
    return lazy.tensorrt_major(trt) >= 11 or not hasattr(trt.BuilderFlag, "FP16")


def _build(trt: Any, onnx_path: Path, profile: Mapping[str, tuple[tuple[int, ...], ...]], precision: str,
           policy: PrecisionPolicy, workspace: int, timing_cache: bytes, say: Printer, verbose: bool,
           strong: bool) -> tuple[bytes, bytes]:
    logger = trt_logger(trt, verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode since 10; strong typing is 11's only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT could not parse {onnx_path}:\n{errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    prof = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.items():
        prof.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(prof)
    attach_timing_cache(config, timing_cache, say)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: no TF32 matmuls/convolutions
    if precision != "fp32" and not strong:
        pinned = apply_policy(trt, network, config, precision, policy)
        say(f"  {precision}: {pinned} layers pinned to fp32 ({policy.counts()})")
    if hasattr(config, "progress_monitor"):
        config.progress_monitor = progress_monitor(trt, say)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT failed to build {onnx_path.name} (see the log above; try --workspace)")
    cache = config.get_timing_cache()
    return bytes(plan), (bytes(cache.serialize()) if cache is not None else timing_cache)


def attach_timing_cache(config: Any, seed: bytes, say: Printer) -> None:
    """The seeded timing cache, or a new one when TensorRT rejects the seed (made on another device or
    version: ``set_timing_cache`` returns False and ``get_timing_cache()`` would then be None)."""
    cache = config.create_timing_cache(seed) if seed else None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if seed:
        say("  the earlier timing cache does not fit this device or TensorRT; starting a new one")
    cache = config.create_timing_cache(b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        raise EngineBuildError("TensorRT refused a new, empty timing cache")


def apply_policy(trt: Any, network: Any, config: Any, precision: str, policy: PrecisionPolicy) -> int:
    """TensorRT 10.x: enable fp16/bf16 and pin the policy's layers (plus Normalization/SoftMax) to fp32."""
    config.set_flag(trt.BuilderFlag.FP16 if precision == "fp16" else trt.BuilderFlag.BF16)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    floats = {trt.float32, trt.float16, getattr(trt, "bfloat16", trt.float16)}
    always = {trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if layer.type not in always and not policy.matches(layer.name, [o.name for o in outs]):
            continue
        if not outs or any(o.dtype not in floats for o in outs):
            continue
        layer.precision = trt.float32
        for j in range(len(outs)):
            layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def progress_monitor(trt: Any, say: Printer) -> Any:
    """An ``IProgressMonitor`` (TensorRT >= 10) that prints top-level build phases with timings."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.started: dict[str, float] = {}
            self.parents: dict[str, str | None] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.started[phase_name], self.parents[phase_name] = time.monotonic(), parent_phase
            if parent_phase is None:
                say(f"  [{phase_name}] {num_steps} steps")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            if self.parents.get(phase_name) is None:
                say(f"  [{phase_name}] done in {time.monotonic() - self.started.get(phase_name, 0):.1f}s")

    return Monitor()


def engine_record(name: str, plan: bytes, onnx_path: Path, onnx_sha256: str | None, spec: ArtifactSpec,
                  limits: Mapping[str, int], policy: PrecisionPolicy, device_memory: int | None) -> dict[str, Any]:
    """The manifest entry of one engine file."""
    return {
        "file": f"{name}.engine", "size": len(plan), "sha256": hashlib.sha256(plan).hexdigest(),
        "onnx_file": onnx_path.name, "onnx_sha256": onnx_sha256,
        "dims": dims_for(spec, limits), "profile": {k: [list(s) for s in v] for k, v in profile_for(spec, limits).items()},
        "io_bytes": io_bytes(spec, limits), "device_memory_bytes": device_memory,
        "precision_policy": policy.to_dict() | {"keep_fp32": len(policy.keep_fp32)},
    }


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def artifact_order(names: Sequence[str]) -> list[str]:
    """Build order: encoder first (its verification feeds the others)."""
    order = (Artifact.IMAGE_ENCODER, Artifact.PROMPT_DECODER, Artifact.MEMORY_ATTENTION, Artifact.MEMORY_ENCODER)
    return [n for n in order if n in names] + [n for n in names if n not in order]
