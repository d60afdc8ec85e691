"""Low-level probes of the real machine: CUDA driver (ctypes), /proc, Jetson files, ORT providers.

Each probe returns plain values and appends a sentence to ``notes`` when it finds nothing,
so ``sam2edge doctor`` can say *why* (no driver, driver error code, broken install).
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
from pathlib import Path

from sam2edge.backends import lazy
from sam2edge.errors import BackendUnavailableError

# (index, name, compute capability "8.7", total bytes, free bytes, integrated, multiprocessor count)
GpuFacts = tuple[int, str, str, int, int, bool, int]

# cuDeviceGetAttribute ids (cuda.h, CUdevice_attribute).
_ATTR_MULTIPROCESSORS = 16
_ATTR_INTEGRATED = 18
_ATTR_CC_MAJOR = 75
_ATTR_CC_MINOR = 76

# L4T (R<major>.<minor>.<patch>) -> JetPack, from NVIDIA's release table; best effort.
_JETPACK = {
    "38.2": "7.0",
    "36.4.4": "6.2.1",
    "36.4.3": "6.2",
    "36.4": "6.1",
    "36.3": "6.0",
    "36.2": "6.0 DP",
    "35.6": "5.1.4",
    "35.5": "5.1.3",
    "35.4": "5.1.2",
    "35.3": "5.1.1",
    "35.2": "5.1",
    "35.1": "5.0.2",
}


def libcuda_names() -> tuple[str, ...]:
    """Library names tried for the CUDA driver, most specific first."""
    if sys.platform == "win32":
        return ("nvcuda.dll",)
    return ("libcuda.so.1", "libcuda.so", "/usr/lib/aarch64-linux-gnu/tegra/libcuda.so.1")


def load_libcuda() -> ctypes.CDLL | None:
    for name in libcuda_names():
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


class _Driver:
    """The handful of CUDA driver calls the probe needs, with error codes turned into text."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    def call(self, fn: str, *args: object) -> None:
        res = getattr(self.lib, fn)(*args)
        if res != 0:
            msg = ctypes.c_char_p()
            self.lib.cuGetErrorString(res, ctypes.byref(msg))
            text = msg.value.decode() if msg.value else "unknown error"
            raise RuntimeError(f"{fn} failed with CUDA error {res} ({text})")

    def device(self, ordinal: int) -> tuple[int, str, str, int, bool, int]:
        dev = ctypes.c_int()
        self.call("cuDeviceGet", ctypes.byref(dev), ordinal)
        name = ctypes.create_string_buffer(256)
        self.call("cuDeviceGetName", name, 256, dev)
        major, minor, integrated = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        self.call("cuDeviceGetAttribute", ctypes.byref(major), _ATTR_CC_MAJOR, dev)
        self.call("cuDeviceGetAttribute", ctypes.byref(minor), _ATTR_CC_MINOR, dev)
        self.call("cuDeviceGetAttribute", ctypes.byref(integrated), _ATTR_INTEGRATED, dev)
        sms = ctypes.c_int()
        self.call("cuDeviceGetAttribute", ctypes.byref(sms), _ATTR_MULTIPROCESSORS, dev)
        total = ctypes.c_size_t()
        self.call("cuDeviceTotalMem_v2", ctypes.byref(total), dev)
        return (dev.value, name.value.decode(errors="replace"), f"{major.value}.{minor.value}", total.value,
                bool(integrated.value), sms.value)

    def free_bytes(self, dev: int) -> int:
        """cuMemGetInfo needs a context: retain the primary one (the one PyTorch and cudart share)."""
        ctx = ctypes.c_void_p()
        self.call("cuDevicePrimaryCtxRetain", ctypes.byref(ctx), dev)
        try:
            self.call("cuCtxPushCurrent_v2", ctx)
            try:
                free, total = ctypes.c_size_t(), ctypes.c_size_t()
                self.call("cuMemGetInfo_v2", ctypes.byref(free), ctypes.byref(total))
                return free.value
            finally:
                popped = ctypes.c_void_p()
                self.call("cuCtxPopCurrent_v2", ctypes.byref(popped))
        finally:
            self.call("cuDevicePrimaryCtxRelease_v2", dev)


def cuda_driver_gpus(notes: list[str]) -> tuple[list[GpuFacts], str | None]:
    """Every CUDA device with name, compute capability, total and free memory, and the driver version."""
    lib = load_libcuda()
    if lib is None:
        notes.append(f"no CUDA driver: {libcuda_names()[0]} not loadable")
        return [], None
    drv = _Driver(lib)
    try:
        drv.call("cuInit", 0)
        version = ctypes.c_int()
        drv.call("cuDriverGetVersion", ctypes.byref(version))
        count = ctypes.c_int()
        drv.call("cuDeviceGetCount", ctypes.byref(count))
    except (RuntimeError, AttributeError) as exc:
        notes.append(f"CUDA driver present but unusable: {exc}")
        return [], None
    driver = f"{version.value // 1000}.{(version.value % 1000) // 10}"
    gpus = []
    for i in range(count.value):
        try:
            dev, name, cc, total, integrated, sms = drv.device(i)
            free = drv.free_bytes(dev)
        except RuntimeError as exc:
            notes.append(f"GPU {i}: {exc}")
            continue
        gpus.append((i, name, cc, total, free, integrated, sms))
    if not gpus:
        notes.append(f"CUDA driver {driver} reports no usable device")
    return gpus, driver


def meminfo(path: Path) -> tuple[int | None, int | None]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo, or (None, None)."""
    try:
        text = path.read_text()
    except OSError:
        return None, None
    values = {}
    for line in text.splitlines():
        m = re.match(r"(\w+):\s+(\d+)\s*kB", line)
        if m:
            values[m.group(1)] = int(m.group(2)) * 1024
    return values.get("MemTotal"), values.get("MemAvailable")


def l4t_release(path: Path) -> str | None:
    """``# R36 (release), REVISION: 4.3, ...`` -> ``"36.4.3"``; None when the file is absent."""
    try:
        text = path.read_text()
    except OSError:
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def jetpack_for_l4t(release: str) -> str | None:
    """The JetPack release of an L4T release, matching the most specific known prefix."""
    parts = release.split(".")
    for n in (3, 2):
        key = ".".join(parts[:n])
        if key in _JETPACK:
            return _JETPACK[key]
    return None


def nvpmodel_mode(root: Path) -> str | None:
    """Current power mode from ``nvpmodel -q`` (``NV Power Mode: 15W``), else nvpmodel's status file."""
    if root == Path("/"):
        out = run_quiet(["nvpmodel", "-q"])
        if out:
            m = re.search(r"NV Power Mode:\s*(\S+)", out)
            if m:
                return m.group(1)
    status = root / "var/lib/nvpmodel/status"
    try:
        m = re.search(r"pmode:(\d+)", status.read_text())
    except OSError:
        return None
    return f"mode {int(m.group(1))}" if m else None


def run_quiet(cmd: list[str], timeout: float = 5.0) -> str | None:
    """stdout of a small system tool, or None if it is absent or fails."""
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def advertised_ort_providers() -> tuple[str, ...]:
    ort = lazy.import_onnxruntime()
    return tuple(ort.get_available_providers())


def working_ort_providers(notes: list[str]) -> tuple[str, ...]:
    """Providers that a real session gets for a one-node model.

    ``get_available_providers()`` lists what the wheel was built with; a CUDA provider whose
    cuDNN/cuBLAS libraries are missing is listed but silently replaced by CPU in a session.
    """
    ort = lazy.import_onnxruntime()
    try:
        model = _identity_model_bytes()
    except BackendUnavailableError:
        notes.append("onnx is not installed: ONNX Runtime providers are the advertised ones, not verified")
        return advertised_ort_providers()
    working = []
    for provider in ort.get_available_providers():
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            chain = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
            sess = ort.InferenceSession(model, opts, providers=chain)
        except Exception as exc:
            notes.append(f"onnxruntime {provider}: session failed ({str(exc).splitlines()[0]})")
            continue
        if sess.get_providers()[0] == provider:
            working.append(provider)
        else:
            notes.append(f"onnxruntime lists {provider} but a session fell back to {sess.get_providers()[0]}")
    return tuple(working)


def _identity_model_bytes() -> bytes:
    onnx = lazy.import_onnx("checking ONNX Runtime providers")
    helper, TensorProto = onnx.helper, onnx.TensorProto
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def cudart_version(notes: list[str]) -> str | None:
    """CUDA runtime version through cuda-python (``cuda.bindings.runtime``, or ``cuda.cudart`` before 12.6)."""
    try:
        cudart = lazy.import_cudart()
        err, ver = cudart.cudaRuntimeGetVersion()
    except Exception as exc:
        notes.append(f"cuda-python could not report the CUDA runtime version: {exc}")
        return None
    if int(err) != 0:
        notes.append(f"cudaRuntimeGetVersion failed: {err}")
        return None
    return f"{ver // 1000}.{(ver % 1000) // 10}"
