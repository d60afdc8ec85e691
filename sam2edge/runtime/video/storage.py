"""Compact storage of memory features: bfloat16 (as the official predictor), float16 or float32.

numpy has no bfloat16, so a bf16 tensor is kept as the upper 16 bits of the float32 pattern
(``uint16``), rounded to nearest-even exactly as ``torch.Tensor.to(torch.bfloat16)`` does;
widening back is a shift. Memory attention always receives float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sam2edge.errors import InputError

STORAGE_DTYPES = ("bfloat16", "float16", "float32")
_BF16_QNAN = np.uint16(0x7FC0)


def float32_to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 array -> uint16 bf16 bit patterns (round to nearest, ties to even; NaN -> qNaN)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    rounding = ((bits >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF)
    out = ((bits + rounding) >> np.uint32(16)).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = _BF16_QNAN
    return out


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bf16 bit patterns -> float32 array (exact)."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


@dataclass(frozen=True)
class StoredTensor:
    """One tensor in its storage dtype; ``.array()`` gives float32 back."""

    data: np.ndarray
    dtype: str

    def array(self) -> np.ndarray:
        if self.dtype == "bfloat16":
            return bfloat16_bits_to_float32(self.data)
        return self.data.astype(np.float32, copy=False)

    def widen_into(self, out: np.ndarray) -> None:
        """Write the float32 values into ``out`` (same shape, float32, C-contiguous) without temporaries."""
        if self.dtype == "bfloat16":
            bits = out.view(np.uint32)
            np.copyto(bits, self.data, casting="safe")
            np.left_shift(bits, np.uint32(16), out=bits)
        else:
            np.copyto(out, self.data, casting="safe")

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def store(x: np.ndarray, dtype: str) -> StoredTensor:
    """Copy ``x`` into a StoredTensor of ``dtype`` ("bfloat16", "float16" or "float32")."""
    if dtype == "bfloat16":
        return StoredTensor(float32_to_bfloat16_bits(x), dtype)
    if dtype == "float16":
        return StoredTensor(np.asarray(x, dtype=np.float32).astype(np.float16), dtype)
    if dtype == "float32":
        return StoredTensor(np.array(x, dtype=np.float32, copy=True), dtype)
    raise InputError(f"memory_dtype must be one of {STORAGE_DTYPES}, got {dtype!r}")
