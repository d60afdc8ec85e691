"""The one registry of backends: names, fallback order, families users ask for, and how runners are made.

Every other module reads backend names from here (``ORDER``, ``FAMILIES``, ``CHOICES``). A backend is
a module of this package with one factory of the same signature::

    create_runners(sources: RunnerSources, device: str, artifacts: Sequence[str]) -> dict[str, Runner]

``RunnerSources`` carries plain data (an ONNX folder, verified engine-byte loaders, a PyTorch model
loader), so this layer needs nothing from the store above it. Adding a backend means one entry in
``BACKENDS`` and one module with ``create_runners``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam2edge.backends import lazy
from sam2edge.backends.base import Runner
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError, InputError


@dataclass(frozen=True)
class BackendInfo:
    """One backend: its name, the family a user requests it by, where it runs and what it needs."""

    name: str  # e.g. "onnxruntime-cuda"
    family: str  # "tensorrt" | "onnxruntime" | "torch" | "triton"
    on_gpu: bool
    module: str  # sam2edge.backends.<module> with create_runners()
    library: str  # the importable library it needs (for messages and `available`)
    overhead_mib: int  # device memory beyond weights and activations: CUDA context, kernels, handles
    remote: bool = False  # runs on a server (a Triton URL), not on this machine's devices
    # Whether one call with B objects costs less per object than B calls of one (the video tracker's
    # memory attention, decoder and memory encoder): false for eager PyTorch on the CPU, where batched
    # products fall out of the caches (see sam2edge.runtime.video.runners).
    batches_pay: bool = True


TENSORRT, ONNXRUNTIME, TORCH, TRITON = "tensorrt", "onnxruntime", "torch", "triton"  # the families
BACKENDS: tuple[BackendInfo, ...] = (  # in fallback order: fastest first
    BackendInfo("tensorrt", TENSORRT, True, "sam2edge.backends.tensorrt_runner", "tensorrt", 300),
    BackendInfo("onnxruntime-cuda", ONNXRUNTIME, True, "sam2edge.backends.onnxruntime_runner", "onnxruntime", 600),
    BackendInfo("torch-cuda", TORCH, True, "sam2edge.backends.torch_runner", "torch", 800),
    BackendInfo("onnxruntime-cpu", ONNXRUNTIME, False, "sam2edge.backends.onnxruntime_runner", "onnxruntime", 0),
    BackendInfo("torch-cpu", TORCH, False, "sam2edge.backends.torch_runner", "torch", 0, batches_pay=False),
    # Models served by a Triton Inference Server (``triton://host:port/prefix``): only for such a source,
    # and never a fallback of a local one (nor the other way round: a remote source has no local files).
    BackendInfo("triton", TRITON, False, "sam2edge.backends.triton_runner", "tritonclient", 0, remote=True),
)
BY_NAME: Mapping[str, BackendInfo] = {b.name: b for b in BACKENDS}
ORDER: tuple[str, ...] = tuple(b.name for b in BACKENDS if not b.remote)  # the local fallback order
REMOTE_ORDER: tuple[str, ...] = tuple(b.name for b in BACKENDS if b.remote)  # for a served (triton://) model
GPU_BACKENDS = frozenset(b.name for b in BACKENDS if b.on_gpu)
ONE_OBJECT_PER_CALL = frozenset(b.name for b in BACKENDS if not b.batches_pay)
REMOTE_BACKENDS = frozenset(b.name for b in BACKENDS if b.remote)
AUTO = "auto"
FAMILIES: Mapping[str, tuple[str, ...]] = {
    AUTO: ORDER,
    **{fam: tuple(b.name for b in BACKENDS if b.family == fam) for fam in dict.fromkeys(b.family for b in BACKENDS)},
}
CHOICES: tuple[str, ...] = tuple(FAMILIES)  # what `backend=` and `--backend` accept


def info(name: str) -> BackendInfo:
    """The registry entry of a backend name (e.g. "onnxruntime-cpu")."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise InputError(f"unknown backend {name!r}; known: {list(ORDER)}") from None


def family(name: str) -> str:
    """The family of a backend name: ``family("onnxruntime-cuda") == ONNXRUNTIME``."""
    return info(name).family


def check_choice(backend: Any, name: str = "backend") -> str:
    """A requested backend family (``CHOICES``), or InputError naming ``name``."""
    if backend not in FAMILIES:
        raise InputError(f"{name} must be one of {list(CHOICES)}, got {backend!r}")
    return backend


def runtime_errors() -> tuple[type[BaseException], ...]:
    """Errors that trigger a run-time fallback: ours, torch's CUDA out-of-memory and ONNX Runtime's run-time
    failures (allocation failures surface as ``RuntimeException``/``EPFail``), for libraries already loaded."""
    errors: list[type[BaseException]] = [BackendRuntimeError]
    torch = lazy.loaded("torch")
    if torch is not None and hasattr(torch.cuda, "OutOfMemoryError"):
        errors.append(torch.cuda.OutOfMemoryError)
    state = lazy.loaded("onnxruntime.capi.onnxruntime_pybind11_state")
    errors += [getattr(state, n) for n in ("RuntimeException", "EPFail") if state is not None and hasattr(state, n)]
    return tuple(errors)


def device_index(device: str) -> int:
    """``"cuda:2"`` -> 2; ``"cuda"`` / ``"cpu"`` -> 0."""
    return int(device.split(":")[1]) if ":" in device else 0


@dataclass(frozen=True)
class RunnerSources:
    """What a backend can build runners from; each backend uses the part it needs.

    onnx_dir: an exported ONNX folder (ONNX Runtime). engine_bytes: artifact name -> a function
    returning that engine's bytes, verified against its manifest (TensorRT). torch_loader: device
    string -> a loaded SAM2 PyTorch model (PyTorch). threads: CPU threads for CPU backends.
    remote_url: ``triton://host:port/prefix`` (Triton).
    variant: the model name recorded in the export's manifest (its specs: EdgeTAM's differ).
    """

    onnx_dir: Path | None = None
    engine_bytes: Mapping[str, Callable[[], bytes]] = field(default_factory=dict)
    engine_label: str = ""
    torch_loader: Callable[[str], Any] | None = None
    threads: int | None = None
    remote_url: str | None = None
    variant: str | None = None  # the model the engines were built for: its artifact specs (None: SAM2's)


def create_runners(backend: str, sources: RunnerSources, device: str, artifacts: Sequence[str]) -> dict[str, Runner]:
    """Runners of ``artifacts`` on ``backend`` (a registry name) and ``device`` ("cpu", "cuda:N").

    A backend whose module or library is not installed raises BackendUnavailableError.
    """
    entry = info(backend)
    try:
        module = importlib.import_module(entry.module)
        return module.create_runners(sources, device, tuple(artifacts))
    except ImportError as exc:  # an optional library (or part of one) that is not installed
        raise BackendUnavailableError(f"{backend}: {exc}") from exc
