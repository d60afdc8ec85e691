"""Backend selection: a pure decision over a recorded machine, what is installed and what is stored.

Order: TensorRT -> ONNX Runtime CUDA -> PyTorch CUDA -> ONNX Runtime CPU -> PyTorch CPU.
Each candidate is admitted or excluded with a reason. A GPU candidate is admitted only if its
expected device memory (:mod:`sam2edge.runtime.estimate`) plus a headroom fits the usable free
memory: the driver's free memory, or on Jetson min(driver free, MemAvailable). CPU candidates
are checked against MemAvailable the same way.

``decide`` takes only data (:class:`DeviceDescription`, :class:`Installed`, :class:`Sources`,
:class:`Request`), so the same code is tested on this machine and on recorded descriptions of
a Jetson or a busy RTX box.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sam2edge.backends import registry
from sam2edge.contract.artifacts import BATCH, NUM_OBJECTS
from sam2edge.engines.fingerprint import DeviceDescription, GpuInfo, Installed, mib
from sam2edge.runtime import estimate

PRECISION_PREFERENCE = ("fp16", "bf16", "fp32")


@dataclass(frozen=True)
class EngineOption:
    """One engine set in the store, as the store found it (problems empty = usable here)."""

    precision: str
    dir: str
    problems: tuple[str, ...] = ()
    device_memory_bytes: int | None = None
    weights_bytes: int = 0
    io_bytes: int = 0
    dims_max: dict[str, int] = field(default_factory=dict)
    rebuild_command: str = ""


@dataclass(frozen=True)
class Sources:
    """What can be loaded for one model: checkpoint (PyTorch), ONNX export, engine sets."""

    variant: str
    torch_weights: bool = False
    onnx_dir: str | None = None
    onnx_bytes: int | None = None
    engines: tuple[EngineOption, ...] = ()
    export_hint: str = ""  # command that creates the ONNX export when it is missing
    remote_url: str | None = None  # triton://host:port/prefix: models served by Triton, nothing local


@dataclass(frozen=True)
class Request:
    backend: str = "auto"  # "auto" | "tensorrt" | "onnxruntime" | "torch"
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    batch: int = 1  # images per encoder call, or objects when video=True
    video: bool = False
    precision: str | None = None  # TensorRT engine precision wanted; None = best available
    strict: bool = False
    headroom_fraction: float = 0.10  # of the device's total memory
    headroom_min_bytes: int = 256 * estimate.MiB


@dataclass(frozen=True)
class Candidate:
    backend: str
    device: str
    admitted: bool
    reason: str
    need_bytes: int | None = None
    free_bytes: int | None = None
    engine_dir: str | None = None
    precision: str | None = None


@dataclass(frozen=True)
class Decision:
    request: Request
    candidates: tuple[Candidate, ...]

    @property
    def admitted(self) -> list[Candidate]:
        return [c for c in self.candidates if c.admitted]

    @property
    def chosen(self) -> Candidate | None:
        return self.admitted[0] if self.admitted else None

    def format(self) -> str:
        lines = []
        for c in self.candidates:
            mark = "->" if c is self.chosen else ("ok" if c.admitted else "--")
            lines.append(f"{mark} {c.backend:<17} {c.device:<7} {c.reason}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"request": asdict(self.request), "chosen": self.chosen.backend if self.chosen else None,
                "candidates": [asdict(c) for c in self.candidates]}


def decide(device: DeviceDescription, installed: Installed, sources: Sources, request: Request) -> Decision:
    """Every backend in order, admitted or excluded with a reason; the requested ones first."""
    wanted = wanted_backends(request)
    pool = registry.REMOTE_ORDER if sources.remote_url is not None else registry.ORDER  # never mixed: see the registry
    order = [b for b in pool if b in wanted] + [b for b in pool if b not in wanted]
    gpu = _gpu(device, request.device)
    out = []
    for backend in order:
        on_gpu = backend in registry.GPU_BACKENDS
        dev = "remote" if backend in registry.REMOTE_BACKENDS else (f"cuda:{gpu.index}" if gpu else "cuda") if on_gpu else "cpu"
        if backend not in wanted and request.strict:
            out.append(Candidate(backend, dev, False, f"not requested (backend={request.backend!r}, "
                                                       f"device={request.device!r}, strict)"))
            continue
        c = _judge(backend, dev, gpu, device, installed, sources, request)
        if c.admitted and backend not in wanted:
            c = Candidate(**{**asdict(c), "reason": "fallback: " + c.reason})
        out.append(c)
    return Decision(request, tuple(out))


def wanted_backends(request: Request) -> set[str]:
    wanted = set(registry.FAMILIES[registry.check_choice(request.backend)])
    remote = wanted & registry.REMOTE_BACKENDS  # the server's devices are its own business
    if request.device == "cpu":
        wanted -= registry.GPU_BACKENDS
    elif request.device.startswith("cuda"):
        wanted &= registry.GPU_BACKENDS
    return wanted | remote


def _gpu(device: DeviceDescription, requested: str) -> GpuInfo | None:
    index = int(requested.split(":")[1]) if requested.startswith("cuda:") else 0
    return device.gpu(index)


def _judge(backend: str, dev: str, gpu: GpuInfo | None, device: DeviceDescription, installed: Installed,
           sources: Sources, request: Request) -> Candidate:
    missing = _missing(backend, gpu, device, installed, sources)
    if missing:
        return Candidate(backend, dev, False, missing)
    if backend in registry.REMOTE_BACKENDS:  # no local memory to admit against: the server holds the models
        return Candidate(backend, dev, True, f"served by Triton at {sources.remote_url}")
    if registry.family(backend) == registry.TENSORRT:
        return _judge_tensorrt(dev, gpu, device, sources, request)  # type: ignore[arg-type]
    if registry.family(backend) == registry.ONNXRUNTIME:
        weights = int(sources.onnx_bytes or 0)
    else:
        weights = estimate.torch_weights_bytes(sources.variant)
    need = estimate.framework_need(backend, sources.variant, request.batch, weights, request.video)
    return _fits(backend, dev, gpu, device, request, need, "estimate")


def _missing(backend: str, gpu: GpuInfo | None, device: DeviceDescription, installed: Installed,
             sources: Sources) -> str:
    """Why ``backend`` cannot even be tried here, or "" when it can."""
    if backend in registry.REMOTE_BACKENDS:
        if sources.remote_url is None:
            return "needs a model served by Triton: load triton://host:port/<model prefix>"
        if installed.tritonclient is None:
            return "tritonclient is not installed (pip install 'sam2edge[triton]')"
        return ""
    on_gpu = backend in registry.GPU_BACKENDS
    if on_gpu and gpu is None:
        why = "; ".join(device.notes) or "the CUDA driver reports no GPU"
        return f"no CUDA GPU ({why})"
    fam = registry.family(backend)
    if fam == registry.TENSORRT:
        if installed.tensorrt is None:
            return "tensorrt is not installed (pip install 'sam2edge[tensorrt]', or JetPack's python3-libnvinfer)"
        if installed.cuda_python is None and installed.torch_cuda is None:
            return "device memory needs cuda-python (pip install cuda-python) or PyTorch with CUDA"
        if not sources.engines:
            return f"no TensorRT engines in the store for {sources.variant} (run `sam2edge build {sources.variant}`)"
    elif fam == registry.ONNXRUNTIME:
        if installed.onnxruntime is None:
            return "onnxruntime is not installed (pip install onnxruntime or onnxruntime-gpu)"
        provider = "CUDAExecutionProvider" if on_gpu else "CPUExecutionProvider"
        if provider not in installed.ort_providers:
            return f"onnxruntime {installed.onnxruntime} has no working {provider} (has {list(installed.ort_providers)})"
        if sources.onnx_dir is None:
            return f"no ONNX export of {sources.variant} in the store ({sources.export_hint or 'run sam2edge export'})"
    else:
        if installed.torch is None:
            return "torch is not installed (pip install 'sam2edge[torch]')"
        if on_gpu and installed.torch_cuda is None:
            return f"torch {installed.torch} has no CUDA support or sees no GPU"
        if not sources.torch_weights:
            return f"no checkpoint given for {sources.variant} to load into PyTorch"
    return ""


def _judge_tensorrt(dev: str, gpu: GpuInfo, device: DeviceDescription, sources: Sources,
                    request: Request) -> Candidate:
    prefs = (request.precision,) if request.precision else PRECISION_PREFERENCE
    options = sorted((e for e in sources.engines if e.precision in prefs), key=lambda e: prefs.index(e.precision))
    if not options:
        have = sorted({e.precision for e in sources.engines})
        return Candidate(registry.TENSORRT, dev, False, f"no {'/'.join(prefs)} engines in the store (have {have})")
    refusals = []
    for e in options:
        problems = list(e.problems) + _dims_problems(e, request)
        if problems:
            refusals.append(f"{e.precision} engines in {e.dir} refused: {'; '.join(problems)}; "
                            f"rebuild: {e.rebuild_command}")
            continue
        need, source = estimate.tensorrt_need(e.device_memory_bytes, e.weights_bytes, e.io_bytes, sources.variant,
                                              request.batch, request.video, unified=device.shares_memory(gpu))
        c = _fits(registry.TENSORRT, dev, gpu, device, request, need, source)
        c = Candidate(**{**asdict(c), "engine_dir": e.dir, "precision": e.precision,
                         "reason": f"{e.precision} engines: {c.reason}"})
        if c.admitted:
            return c
        refusals.append(c.reason)
    return Candidate(registry.TENSORRT, dev, False, " | ".join(refusals))


def _dims_problems(e: EngineOption, request: Request) -> list[str]:
    dim = NUM_OBJECTS.name if request.video else BATCH.name
    limit = e.dims_max.get(dim)
    if limit is not None and request.batch > limit:
        flag = "--max-batch"
        return [f"built for {dim} <= {limit}, requested {request.batch} (rebuild with {flag} {request.batch})"]
    return []


def _fits(backend: str, dev: str, gpu: GpuInfo | None, device: DeviceDescription, request: Request, need: int,
          source: str) -> Candidate:
    """Admit when need + headroom <= usable free memory (GPU: driver/Jetson rule; CPU: MemAvailable)."""
    if backend in registry.GPU_BACKENDS:
        assert gpu is not None
        free, how = device.usable_free_bytes(gpu)
        total = gpu.total_bytes
    else:
        if device.mem_available_bytes is None:
            return Candidate(backend, dev, True, f"needs ~{mib(need)} ({source}); available memory unknown", need)
        free, how, total = device.mem_available_bytes, f"MemAvailable {mib(device.mem_available_bytes)}", \
            device.mem_total_bytes or device.mem_available_bytes
    headroom = max(request.headroom_min_bytes, int(request.headroom_fraction * total))
    fits = need + headroom <= free
    verdict = "fits" if fits else "does not fit"
    reason = f"needs ~{mib(need)} ({source}) + headroom {mib(headroom)}; {verdict} in {how}"
    return Candidate(backend, dev, fits, reason, need, free)
