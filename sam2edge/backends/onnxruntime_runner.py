"""ONNX Runtime runners: the exported artifacts without PyTorch.

CPU here; CUDA and TensorRT execution providers when asked for explicitly. ONNX Runtime
silently falls back to the CPU when a provider cannot start, so every runner reports what
actually came up in ``active_providers`` / ``backend``, logs a warning on a fallback, and
raises BackendUnavailableError instead when ``strict=True``.

Needs onnxruntime and numpy only.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.backends.lazy import import_onnxruntime
from sam2edge.backends.registry import RunnerSources, device_index
from sam2edge.contract.edgetam_artifacts import specs_for_variant
from sam2edge.contract.manifest import MANIFEST_NAME, RecordedFile, read_manifest, recorded_file, require, spec_to_dict
from sam2edge.contract.spec import ArtifactSpec
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError, EngineMismatchError

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_BACKEND_NAMES = {
    "CPUExecutionProvider": "onnxruntime-cpu",
    "CUDAExecutionProvider": "onnxruntime-cuda",
    "TensorrtExecutionProvider": "onnxruntime-tensorrt",
}
ProviderArg = str | tuple[str, dict]


def normalize_providers(providers: Sequence[ProviderArg]) -> list[tuple[str, dict]]:
    """Aliases ('cpu', 'cuda', 'tensorrt') or full names, optionally with options -> [(name, options)].

    The TensorRT provider always has CUDA right behind it: nodes TensorRT cannot take then run on the
    GPU, not on the CPU (ONNX Runtime assigns them to the next provider in the list).
    """
    out = []
    for p in providers:
        name, opts = (p, {}) if isinstance(p, str) else (p[0], dict(p[1]))
        out.append((PROVIDER_ALIASES.get(name.lower(), name), opts))
    names = [n for n, _ in out]
    if "TensorrtExecutionProvider" in names and "CUDAExecutionProvider" not in names:
        trt = names.index("TensorrtExecutionProvider")
        device = {k: v for k, v in out[trt][1].items() if k == "device_id"}
        out.insert(trt + 1, ("CUDAExecutionProvider", device))
    if not out:
        out = [("CPUExecutionProvider", {})]
    return out


# Graph rewrites that make this ONNX Runtime build slower on its CPU provider, measured (ORT 1.31,
# 2 threads, quiet 2-core CPU): the fused SkipLayerNormalization over (4096, 256) took 3.2 ms where
# the Add + LayerNormalization it replaces take 0.3 + 0.67 ms; on the decoder the whole graph ran
# 50.7 instead of 57.2 ms (median of 30) without it, and the encoder has no such site. Other
# providers keep every fusion (their fused kernels are the fast ones).
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


def disabled_optimizers(provider_names: Sequence[str]) -> list[str]:
    """ONNX Runtime graph optimizers to switch off for a session whose first provider is given."""
    return list(CPU_DISABLED_OPTIMIZERS) if provider_names[:1] == ["CPUExecutionProvider"] else []


def _shape_list(spec: ArtifactSpec, which: int) -> str:
    """TensorRT EP profile string 'name:AxBxC,...' for min (0) / opt (1) / max (2)."""
    prof = spec.profile()
    return ",".join(f"{n}:{'x'.join(str(d) for d in shapes[which])}" for n, shapes in prof.items())


def default_provider_options(name: str, spec: ArtifactSpec, cache_dir: Path | None) -> dict:
    """Sensible options: device 0, a growing CUDA arena, TensorRT profiles from the spec + engine cache."""
    if name == "CUDAExecutionProvider":
        return {"device_id": 0, "arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "HEURISTIC"}
    if name == "TensorrtExecutionProvider":
        opts: dict[str, Any] = {
            "device_id": 0,
            "trt_fp16_enable": False,
            "trt_profile_min_shapes": _shape_list(spec, 0),
            "trt_profile_opt_shapes": _shape_list(spec, 1),
            "trt_profile_max_shapes": _shape_list(spec, 2),
        }
        if cache_dir is not None:
            opts.update({"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir)})
        return opts
    return {}


class OnnxRuntimeRunner(Runner):
    """Runs one exported artifact in an ``onnxruntime.InferenceSession``. numpy in, numpy out.

    Args:
        spec: the artifact's spec (names, dtypes, dims).
        path: the ``.onnx`` file.
        providers: in order of preference; aliases 'cpu'/'cuda'/'tensorrt' or full names,
            optionally ``(name, options)``. The CPU provider is always the last resort.
        threads: intra-op threads (None: ONNX Runtime's default, one per physical core).
        strict: raise BackendUnavailableError when the first provider did not come up.
        cache_dir: where the TensorRT provider caches its engines (default: beside the model).
        recorded: the manifest's record of the file (sha256, size): the session is then created from the
            bytes read and verified in one pass, so a file damaged or swapped after export is never loaded.
        spin: let idle worker threads spin-wait (ONNX Runtime's default). Measured on a quiet
            2-core CPU it is 10% faster for the encoder and 25% for the decoder; on a machine
            shared with other busy processes (a camera pipeline, CI) ``spin=False`` was 10-15%
            faster, because spinning threads steal the cores doing the work.
    """

    thread_safe = True  # InferenceSession.run is thread-safe

    def __init__(
        self,
        spec: ArtifactSpec,
        path: str | os.PathLike,
        providers: Sequence[ProviderArg] = ("CPUExecutionProvider",),
        threads: int | None = None,
        strict: bool = False,
        cache_dir: str | os.PathLike | None = None,
        spin: bool = True,
        recorded: RecordedFile | None = None,
    ) -> None:
        super().__init__(spec)
        self.recorded = recorded  # when set, the bytes are verified against it while they are read
        self.spin = spin
        self.path = Path(path)
        self.requested_providers = normalize_providers(providers)
        self.threads = threads
        self.strict = strict
        self.cache_dir = Path(cache_dir) if cache_dir else self.path.parent / "ort_trt_cache"
        self.active_providers: list[str] = []
        self.backend = _BACKEND_NAMES.get(self.requested_providers[0][0], "onnxruntime")
        self.session: Any = None
        self._device_inputs: dict[str, tuple[weakref.ref, Any]] = {}

    # -- lifecycle -------------------------------------------------------------------
    def session_options(self) -> Any:
        ort = import_onnxruntime()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.enable_cpu_mem_arena = True
        so.enable_mem_pattern = True
        so.inter_op_num_threads = 1
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        so.log_severity_level = 3  # errors only; fallbacks are reported by us
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return so

    def _activate_impl(self) -> None:
        ort = import_onnxruntime()
        if not self.path.is_file():
            raise EngineMismatchError(f"{self.spec.name}: ONNX file {self.path} is missing; run `sam2edge export`")
        model: str | bytes = str(self.path) if self.recorded is None else self.recorded.read(f"{self.spec.name} ONNX file")
        available = set(ort.get_available_providers())
        names, options = [], []
        for name, opts in self.requested_providers:
            if name not in available:
                log.warning("%s: %s is not available in this onnxruntime build (%s)", self.spec.name, name,
                            sorted(available))
                continue
            if name == "TensorrtExecutionProvider":
                self.cache_dir.mkdir(parents=True, exist_ok=True)
            names.append(name)
            options.append({**default_provider_options(name, self.spec, self.cache_dir), **opts})
        if "CPUExecutionProvider" not in names:
            names.append("CPUExecutionProvider")
            options.append({})
        try:
            self.session = ort.InferenceSession(model, self.session_options(), providers=names,
                                                provider_options=options,
                                                disabled_optimizers=disabled_optimizers(names))
        except Exception as exc:  # ORT raises plain RuntimeError/Fail subclasses
            raise BackendUnavailableError(f"{self.spec.name}: onnxruntime could not load {self.path}: {exc}") from exc
        self.active_providers = list(self.session.get_providers())
        self.backend = _BACKEND_NAMES.get(self.active_providers[0], "onnxruntime")
        self._check_session_io()
        wanted = self.requested_providers[0][0]
        if self.active_providers[0] != wanted:
            msg = (f"{self.spec.name}: asked for {wanted} but onnxruntime runs on {self.active_providers[0]} "
                   f"(active providers {self.active_providers})")
            if self.strict:
                self.session = None
                raise BackendUnavailableError(msg)
            log.warning("%s", msg)
        log.info("%s: onnxruntime %s on %s", self.spec.name, ort.__version__, self.active_providers)

    def _deactivate_impl(self) -> None:
        self.session = None
        self._device_inputs.clear()

    def _check_session_io(self) -> None:
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != self.spec.input_names or got_out != self.spec.output_names:
            raise EngineMismatchError(
                f"{self.spec.name}: {self.path} has inputs {got_in} / outputs {got_out}, this sam2edge expects "
                f"{self.spec.input_names} / {self.spec.output_names}; re-export the model"
            )

    # -- inference -------------------------------------------------------------------
    @property
    def on_device(self) -> bool:
        return bool(self.active_providers) and self.active_providers[0] != "CPUExecutionProvider"

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {n: np.ascontiguousarray(feeds[n], dtype=t.dtype) for n, t in zip(self.spec.input_names,
                                                                                   self.spec.inputs)}
        try:
            if self.on_device:
                return self._run_bound(arrays)
            outs = self.session.run(self.spec.output_names, arrays)
        except Exception as exc:
            raise BackendRuntimeError(f"{self.describe()} ({self.active_providers[0]}) failed: {exc}") from exc
        return dict(zip(self.spec.output_names, outs))

    def _run_bound(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """IO binding on a GPU provider: read-only inputs (e.g. cached image features, passed again and
        again for every click) stay on the device while the very same array object is passed; the
        rest is copied once per call; outputs land in host memory."""
        ort = import_onnxruntime()
        binding = self.session.io_binding()
        for name, arr in arrays.items():
            if not arr.flags.writeable:
                cached = self._device_inputs.get(name)
                if cached is None or cached[0]() is not arr:
                    cached = (weakref.ref(arr), ort.OrtValue.ortvalue_from_numpy(arr, *self._device()))
                    self._device_inputs[name] = cached
                binding.bind_ortvalue_input(name, cached[1])
            else:
                binding.bind_cpu_input(name, arr)
        for name in self.spec.output_names:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        return dict(zip(self.spec.output_names, binding.copy_outputs_to_cpu()))

    def _device(self) -> tuple[str, int]:
        """(device type, id) of the active GPU provider, for OrtValues kept on the device."""
        opts = self.session.get_provider_options().get(self.active_providers[0], {})
        return "cuda", int(opts.get("device_id", 0))

    def describe(self) -> str:
        where = self.active_providers[0] if self.active_providers else self.requested_providers[0][0]
        return f"{self.backend}:{self.spec.name} [{where}]"


def make_onnxruntime_runners(
    artifact_dir: str | os.PathLike,
    providers: Sequence[ProviderArg] = ("CPUExecutionProvider",),
    threads: int | None = None,
    artifacts: Sequence[str] | None = None,
    strict: bool = False,
    spin: bool = True,
) -> dict[str, Runner]:
    """One OnnxRuntimeRunner per artifact found in an export folder (``.../onnx``).

    With a manifest, its artifact list and specs are checked against this sam2edge
    (EngineMismatchError if they differ: re-export), every file it names must lie inside the
    folder, and each session is created from bytes verified against the recorded sha256 and
    size while they are read (IntegrityError otherwise). Without a manifest, ``<name>.onnx``
    files are used as they are. Sessions are created lazily on first use (or ``activate()``).
    """

    directory = Path(artifact_dir)
    if (directory / "onnx").is_dir() and not (directory / MANIFEST_NAME).is_file():
        directory = directory / "onnx"
    manifest = read_manifest(directory) if (directory / MANIFEST_NAME).is_file() else None
    listed = require(manifest, "artifacts", dict, directory) if manifest else {}
    specs = specs_for_variant(manifest.get("variant") if manifest else None)
    names = list(artifacts) if artifacts else [n for n in specs if n in listed or (directory / f"{n}.onnx").is_file()]
    if not names:
        raise EngineMismatchError(f"no ONNX artifacts in {directory}; run `sam2edge export CHECKPOINT`")
    runners: dict[str, Runner] = {}
    for name in names:
        spec = specs[name]
        if manifest is not None:
            info = listed.get(name)
            if info is None:
                raise EngineMismatchError(f"{name} is not in the manifest of {directory}; export it (--artifacts {name})")
            recorded = recorded_file(directory, info, f"{name}.onnx", f"{name} ONNX file")
            if info.get("spec") != spec_to_dict(spec):
                raise EngineMismatchError(
                    f"{name} in {directory} was exported with a different interface than this sam2edge expects; "
                    "re-run `sam2edge export`"
                )
            path = recorded.path
        else:
            recorded, path = None, directory / f"{name}.onnx"
        runners[name] = OnnxRuntimeRunner(spec, path, providers=providers, threads=threads, strict=strict, spin=spin,
                                          recorded=recorded)
    return runners


def _ort_errors(*names: str) -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception classes by name (only those this version has)."""
    state = import_onnxruntime().capi.onnxruntime_pybind11_state
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


LOAD_ERRORS = ("Fail", "InvalidProtobuf", "NoSuchFile", "InvalidGraph", "NotImplemented", "RuntimeException", "EPFail")


def create_runners(sources: RunnerSources, device: str, artifacts: Sequence[str]) -> dict[str, Runner]:
    """The registry factory: active ONNX Runtime runners of an export folder on ``device``.

    On a GPU the CUDA provider must really be the one a session got (a CUDA provider whose libraries
    are missing silently falls back to CPU inside ONNX Runtime): otherwise BackendUnavailableError.
    """
    if sources.onnx_dir is None:
        raise BackendUnavailableError("no ONNX export to run with onnxruntime")
    if device == "cpu":
        providers: list[ProviderArg] = ["CPUExecutionProvider"]
    else:
        providers = [("CUDAExecutionProvider", {"device_id": device_index(device)}), "CPUExecutionProvider"]
    runners = make_onnxruntime_runners(sources.onnx_dir, providers=providers, threads=sources.threads,
                                       artifacts=artifacts, strict=device != "cpu")
    for name, runner in runners.items():
        try:
            runner.activate()
        except _ort_errors(*LOAD_ERRORS) as exc:
            raise BackendUnavailableError(f"onnxruntime could not load {name}: {exc}") from exc
        if device != "cpu":
            got = list(getattr(runner, "active_providers", []))
            if not got or got[0] != "CUDAExecutionProvider":
                raise BackendUnavailableError(f"onnxruntime gave {name} the providers {got}, not CUDA")
    return runners
