"""How cached values are held: optional fp16 storage and CPU offload, undone on retrieval.

A cached value is any nesting of dicts, lists, tuples and dataclass instances around numpy
arrays and torch tensors (the embeddings object is opaque to the cache). ``ArrayPacker``
walks that structure once on the way in, replacing each array by a ``PackedArray`` that
remembers what to undo (dtype, device), and once on the way out, rebuilding the same
container types. Dataclasses are rebuilt by copying the instance and setting its fields,
so frozen dataclasses and ``__post_init__`` checks are respected rather than re-run.

The cache never shares memory with its callers: every array is copied on the way in (or
converted, which copies), so writing into an array after saving it, or into a view of a
larger batch, changes nothing cached, and the byte budget counts exactly what is held.
Numpy arrays come back as read-only arrays (writing raises instead of corrupting the entry);
torch tensors cannot be made read-only, so they come back as copies.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from sam2edge.backends import lazy
from sam2edge.errors import InputError
from sam2edge.runtime.image.lru import is_torch_tensor, nbytes_of

FP16_MAX = 65504.0
_FLOAT_NP = (np.dtype(np.float32), np.dtype(np.float64))


class PackedArray:
    """One stored array and what restores it: original dtype and original torch device."""

    __slots__ = ("data", "dtype", "device")

    def __init__(self, data: Any, dtype: Any = None, device: Any = None) -> None:
        self.data = data  # np.ndarray or torch.Tensor, as held by the cache
        self.dtype = dtype  # dtype to restore, None if unchanged
        self.device = device  # torch device to restore, None if unchanged

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.data)


def map_arrays(value: Any, fn: Callable[[Any], Any]) -> Any:
    """Rebuild ``value`` with ``fn`` applied to every array / tensor / PackedArray inside."""
    if isinstance(value, np.ndarray | PackedArray) or is_torch_tensor(value):
        return fn(value)
    if isinstance(value, dict):
        out = {k: map_arrays(v, fn) for k, v in value.items()}
        return out if type(value) is dict else _same_mapping_type(value, out)
    if isinstance(value, list):
        return [map_arrays(v, fn) for v in value]
    if isinstance(value, tuple):
        items = [map_arrays(v, fn) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        new = copy.copy(value)
        for f in dataclasses.fields(value):
            object.__setattr__(new, f.name, map_arrays(getattr(value, f.name), fn))
        return new
    return value


def _same_mapping_type(original: dict, items: dict) -> dict:
    """``items`` in the mapping class of ``original`` (OrderedDict, ...), else a plain dict."""
    try:
        return type(original)(items)
    except TypeError:  # e.g. defaultdict, whose constructor wants a factory first
        return items


def packed_nbytes(value: Any) -> int:
    """Bytes held by a packed value (sums ``PackedArray.data``)."""
    total = 0

    def count(leaf: Any) -> Any:
        nonlocal total
        total += leaf.nbytes if isinstance(leaf, PackedArray) else nbytes_of(leaf)
        return leaf

    map_arrays(value, count)
    return total


def _resolve_dtype(dtype: Any) -> str | None:
    if dtype is None:
        return None
    name = str(dtype).replace("torch.", "").replace("numpy.", "").lower()
    if name in ("float16", "fp16", "half", "<f2"):
        return "float16"
    if name in ("float32", "fp32", "float", "<f4"):
        return None  # storing as fp32 is the default behaviour
    raise InputError(f"dtype must be None, 'float32' or 'float16' (store arrays as fp16, restore fp32), got {dtype!r}")


class ArrayPacker:
    """Packs values for storage (fp16 when asked, torch tensors to CPU) and unpacks them."""

    def __init__(self, send_to_cpu: bool = True, dtype: Any = None) -> None:
        self.send_to_cpu = bool(send_to_cpu)
        self.dtype = _resolve_dtype(dtype)

    def pack(self, value: Any) -> Any:
        return map_arrays(value, self._pack_leaf)

    def unpack(self, value: Any) -> Any:
        return map_arrays(value, self._unpack_leaf)

    # -- one array -------------------------------------------------------------------
    def _pack_leaf(self, x: Any) -> PackedArray:
        if isinstance(x, PackedArray):  # already packed (re-saving a retrieved value is fine)
            return x
        if isinstance(x, np.ndarray):
            return self._pack_numpy(x)
        return self._pack_torch(x)

    def _pack_numpy(self, x: np.ndarray) -> PackedArray:
        if self.dtype == "float16" and x.dtype in _FLOAT_NP and _fits_fp16(np.abs(x).max() if x.size else 0.0):
            return PackedArray(x.astype(np.float16), dtype=x.dtype)
        own = np.array(x, copy=True, order="C")  # never a view of the caller's (or a batch's) memory
        own.flags.writeable = False
        return PackedArray(own)

    def _pack_torch(self, x: Any) -> PackedArray:
        torch = lazy.import_torch("caching torch tensors")
        t = x.detach()
        dtype = device = None
        if (
            self.dtype == "float16"
            and t.dtype in (torch.float32, torch.float64)
            and (t.numel() == 0 or _fits_fp16(float(t.abs().max())))
        ):
            dtype, t = t.dtype, t.to(torch.float16)
        if self.send_to_cpu and t.device.type != "cpu":
            device, t = t.device, _to_host(t)
        if dtype is None and device is None:  # nothing converted: still hold our own copy
            t = t.clone(memory_format=torch.contiguous_format)
        return PackedArray(t, dtype=dtype, device=device)

    @staticmethod
    def _unpack_leaf(leaf: Any) -> Any:
        if not isinstance(leaf, PackedArray):
            return leaf
        data = leaf.data
        if isinstance(data, np.ndarray):
            return data if leaf.dtype is None else data.astype(leaf.dtype)  # read-only, or a new array
        if leaf.device is None and leaf.dtype is None:
            return data.clone()  # a torch tensor cannot be read-only: hand out a copy
        if leaf.device is not None:
            data = data.to(leaf.device, non_blocking=True)
        if leaf.dtype is not None:
            data = data.to(leaf.dtype)
        return data


def _fits_fp16(abs_max: float) -> bool:
    """Finite and within fp16 range; NaN/inf or larger values keep their dtype."""
    return bool(abs_max <= FP16_MAX)


def _to_host(t: Any) -> Any:
    """Copy a device tensor to CPU, into pinned (page-locked) memory when CUDA is available."""
    torch = lazy.import_torch("caching torch tensors")
    if torch.cuda.is_available():
        try:
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t)
            return host
        except RuntimeError:  # pinning can fail (e.g. page-locked memory exhausted)
            pass
    return t.to("cpu")
