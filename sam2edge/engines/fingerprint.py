"""What this machine is: GPUs and their free memory, Jetson release, installed backends.

Everything is probed into frozen dataclasses that serialise to JSON, so the selection logic
(:mod:`sam2edge.runtime.selection`) can be tested over *recorded* descriptions of machines
we do not have (a Jetson Orin Nano, a busy RTX box).

GPU facts come from the CUDA driver API through ``ctypes`` (``libcuda``): there is no NVML on
Jetson, and the driver API needs neither PyTorch nor the CUDA toolkit. On Jetson the GPU
shares physical memory with the CPU, so the usable free memory is the smaller of what the
driver reports and ``MemAvailable`` in ``/proc/meminfo``.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sam2edge.backends import lazy
from sam2edge.engines import probes


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as the driver sees it."""

    index: int
    name: str
    compute_capability: str  # "8.7"
    total_bytes: int
    free_bytes: int
    integrated: bool = False  # shares physical memory with the CPU (Jetson, Grace-less iGPUs)
    multiprocessors: int | None = None  # SM count: tells an Orin Nano (8) from an AGX Orin (16); the name is "Orin"


@dataclass(frozen=True)
class JetsonInfo:
    """A Jetson module: ``/proc/device-tree/model``, ``/etc/nv_tegra_release`` and nvpmodel."""

    model: str
    l4t_release: str  # "36.4.3"
    jetpack: str | None = None  # best-effort mapping of the L4T release, e.g. "6.2"
    power_mode: str | None = None  # e.g. "15W" or "MAXN_SUPER"


@dataclass(frozen=True)
class DeviceDescription:
    """A recordable description of the machine's compute devices and memory."""

    gpus: tuple[GpuInfo, ...] = ()
    cuda_driver_version: str | None = None  # "12.6" from cuDriverGetVersion
    jetson: JetsonInfo | None = None
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    notes: tuple[str, ...] = ()  # why a probe found nothing ("libcuda.so.1 not found")

    def gpu(self, index: int) -> GpuInfo | None:
        return next((g for g in self.gpus if g.index == index), None)

    def shares_memory(self, gpu: GpuInfo) -> bool:
        return gpu.integrated or self.jetson is not None

    def usable_free_bytes(self, gpu: GpuInfo) -> tuple[int, str]:
        """Free device memory and how it was obtained.

        Discrete GPU: the driver's free memory. Shared memory (Jetson): min(driver free,
        MemAvailable), because the CPU side of the process draws from the same pool.
        """
        if self.shares_memory(gpu) and self.mem_available_bytes is not None:
            free = min(gpu.free_bytes, self.mem_available_bytes)
            return free, f"min(cuda free {mib(gpu.free_bytes)}, MemAvailable {mib(self.mem_available_bytes)})"
        return gpu.free_bytes, f"cuda free {mib(gpu.free_bytes)}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeviceDescription:
        jetson = d.get("jetson")
        return cls(
            gpus=tuple(GpuInfo(**g) for g in d.get("gpus", ())),
            cuda_driver_version=d.get("cuda_driver_version"),
            jetson=JetsonInfo(**jetson) if jetson else None,
            mem_total_bytes=d.get("mem_total_bytes"),
            mem_available_bytes=d.get("mem_available_bytes"),
            notes=tuple(d.get("notes", ())),
        )


@dataclass(frozen=True)
class Installed:
    """Which backends are importable here, with versions and *working* ORT providers."""

    tensorrt: str | None = None
    onnxruntime: str | None = None
    ort_providers: tuple[str, ...] = ()  # providers a session really got, not just the advertised list
    torch: str | None = None
    torch_cuda: str | None = None  # torch.version.cuda when torch.cuda.is_available(), else None
    cuda_runtime: str | None = None  # CUDA runtime version (cuda-python's cudart, else torch's)
    cuda_python: str | None = None  # cuda-bindings / cuda-python version when its runtime module imports
    tensorrt_cuda: str | None = None  # CUDA major TensorRT was built for (its wheel: tensorrt-cu<major>)
    tritonclient: str | None = None  # Triton's client (the triton backend), by its distribution; not imported
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Installed:
        d = dict(d)
        d["ort_providers"] = tuple(d.get("ort_providers", ()))
        d["notes"] = tuple(d.get("notes", ()))
        return cls(**d)


@dataclass(frozen=True)
class EngineFingerprint:
    """What a TensorRT engine is tied to; an engine built for one fingerprint runs only there."""

    gpu_name: str
    compute_capability: str
    tensorrt: str
    cuda: str
    l4t: str | None = None
    multiprocessors: int | None = None

    FIELDS = ("gpu_name", "compute_capability", "tensorrt", "cuda", "l4t", "multiprocessors")
    # Compared only when both sides know them: a container without /etc/nv_tegra_release does not know its
    # L4T release, and engines recorded before the SM count was probed do not know theirs.
    WHEN_KNOWN = ("l4t", "multiprocessors")

    @property
    def cuda_major(self) -> str:
        """Engines follow CUDA's minor-version compatibility: only the major version must match."""
        return str(self.cuda).split(".")[0]

    def slug(self) -> str:
        """Directory name: ``nvidia-geforce-rtx-4090-sm89-trt10.3.0-cuda12`` (+ ``-l4t36.4.3``)."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-") or "gpu"
        parts = [gpu, "sm" + self.compute_capability.replace(".", ""), "trt" + self.tensorrt, "cuda" + self.cuda_major]
        if self.multiprocessors:
            parts.append(f"{self.multiprocessors}sm")
        if self.l4t:
            parts.append("l4t" + self.l4t)
        return "-".join(parts)

    def mismatches(self, other: EngineFingerprint) -> list[str]:
        """Human-readable differences, e.g. ``["tensorrt: engine 10.3.0, here 10.7.0"]``."""
        out = []
        for name in self.FIELDS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "cuda":
                mine, theirs = self.cuda_major, other.cuda_major
            if name in self.WHEN_KNOWN and (mine is None or theirs is None):
                continue
            if mine != theirs:
                out.append(f"{name}: engine {mine}, here {theirs}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineFingerprint:
        return cls(**{name: d.get(name) for name in cls.FIELDS})


def engine_fingerprint(device: DeviceDescription, installed: Installed, gpu_index: int = 0) -> EngineFingerprint | None:
    """The fingerprint engines must carry to run on GPU ``gpu_index`` here; None without GPU or TensorRT."""
    gpu = device.gpu(gpu_index)
    if gpu is None or installed.tensorrt is None:
        return None
    # TensorRT's own CUDA (what engines depend on) before the runtime cuda-bindings or torch happen to load.
    cuda = installed.tensorrt_cuda or installed.cuda_runtime or device.cuda_driver_version or "unknown"
    return EngineFingerprint(
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        tensorrt=installed.tensorrt,
        cuda=cuda,
        l4t=device.jetson.l4t_release if device.jetson else None,
        multiprocessors=gpu.multiprocessors,
    )


def mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**20:,.0f} MiB"


# -- probing the real machine ----------------------------------------------------------


def probe_device(root: Path = Path("/")) -> DeviceDescription:
    """Describe this machine. Never raises: what cannot be probed is explained in ``notes``."""
    notes: list[str] = []
    gpus, driver = probes.cuda_driver_gpus(notes)
    total, available = probes.meminfo(root / "proc/meminfo")
    return DeviceDescription(
        gpus=tuple(GpuInfo(*facts) for facts in gpus),
        cuda_driver_version=driver,
        jetson=probe_jetson(root),
        mem_total_bytes=total,
        mem_available_bytes=available,
        notes=tuple(notes),
    )


def probe_jetson(root: Path = Path("/")) -> JetsonInfo | None:
    """Jetson model, L4T release and nvpmodel power mode; None on anything that is not a Jetson."""
    release = probes.l4t_release(root / "etc/nv_tegra_release")
    if release is None:
        return None
    model_file = root / "proc/device-tree/model"
    model = model_file.read_bytes().rstrip(b"\x00").decode(errors="replace").strip() if model_file.exists() else "Jetson"
    return JetsonInfo(
        model=model,
        l4t_release=release,
        jetpack=probes.jetpack_for_l4t(release),
        power_mode=probes.nvpmodel_mode(root),
    )


def probe_installed(check_providers: bool = True) -> Installed:
    """Versions of TensorRT, ONNX Runtime (and the providers that really work), PyTorch, CUDA runtime."""
    notes: list[str] = []
    trt = _version_of("tensorrt", lazy.import_tensorrt, notes)
    ort = _version_of("onnxruntime", lazy.import_onnxruntime, notes)
    providers: tuple[str, ...] = ()
    if ort is not None:
        providers = probes.working_ort_providers(notes) if check_providers else probes.advertised_ort_providers()
    torch_v, torch_cuda = _torch_versions(notes)
    cuda_python = _cuda_python_version()
    cuda_runtime = probes.cudart_version(notes) if cuda_python else None
    return Installed(
        tensorrt=trt,
        onnxruntime=ort,
        ort_providers=providers,
        torch=torch_v,
        torch_cuda=torch_cuda,
        cuda_runtime=cuda_runtime or torch_cuda,
        cuda_python=cuda_python,
        tensorrt_cuda=tensorrt_cuda_major() if trt else None,
        tritonclient=_distribution_version("tritonclient") if lazy.available("tritonclient") else None,
        notes=tuple(notes),
    )


def _distribution_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda_python_version() -> str | None:
    """The version of cuda-python's runtime bindings when they import. Detected by the module, not by a
    distribution: since 12.6 ``cuda-python`` is a metapackage over ``cuda-bindings``, which may come alone."""
    if not lazy.available("cuda"):
        return None
    try:
        lazy.import_cudart()
    except Exception:  # noqa: BLE001 - absent or broken: the doctor reports it as not installed
        return None
    for dist in ("cuda-bindings", "cuda-python"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    bindings = lazy.loaded("cuda.bindings")
    return str(getattr(bindings, "__version__", "unknown"))


_TRT_WHEEL = re.compile(r"^tensorrt[-_](?:(?:lean|dispatch)[-_])?cu(\d+)(?:[-_].*)?$", re.IGNORECASE)


def tensorrt_cuda_major() -> str | None:
    """The CUDA major version TensorRT's wheels were built for: they are named ``tensorrt-cu<major>``,
    ``tensorrt_cu<major>_libs`` (TensorRT python/packaging/tensorrt_build_backend). None for a system install
    (JetPack's python3-libnvinfer), where the CUDA runtime's version stands in."""
    for dist in importlib.metadata.distributions():
        m = _TRT_WHEEL.match(str(dist.metadata["Name"] or ""))
        if m:
            return m.group(1)
    return None


def _version_of(module: str, importer: Callable[[], Any], notes: list[str]) -> str | None:
    if not lazy.available(module):
        return None
    try:
        mod = importer()
    except Exception as exc:  # a broken install is reported, not fatal
        notes.append(f"{module} is installed but failed to import: {exc}")
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _torch_versions(notes: list[str]) -> tuple[str | None, str | None]:
    if not lazy.available("torch"):
        return None, None
    try:
        torch = lazy.import_torch()
    except Exception as exc:
        notes.append(f"torch is installed but failed to import: {exc}")
        return None, None
    cuda = torch.version.cuda if torch.cuda.is_available() else None
    if torch.version.cuda and cuda is None:
        notes.append(f"torch {torch.__version__} is built for CUDA {torch.version.cuda} but sees no GPU")
    return torch.__version__, cuda
