"""Artifact specs: tensor names, dtypes and symbolic dims, written once.

Everything that needs to know an artifact's interface derives it from here: ONNX dynamic
axes and dummy inputs at export, runtime input checks, buffer allocation and TensorRT
optimisation profiles (min/opt/max). Never retype a tensor name elsewhere.

No heavy imports: numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sam2edge.errors import InputError

Which = Literal["min", "opt", "max"]


@dataclass(frozen=True)
class Dim:
    """A symbolic dimension with its TensorRT profile range."""

    name: str
    min: int
    opt: int
    max: int

    def at(self, which: Which) -> int:
        return getattr(self, which)

    def with_max(self, new_max: int) -> Dim:
        return Dim(self.name, min(self.min, new_max), min(self.opt, new_max), new_max)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "int32", "int64", "bool"
    shape: tuple[int | Dim, ...]
    doc: str = ""

    @property
    def dynamic(self) -> dict[int, str]:
        return {i: d.name for i, d in enumerate(self.shape) if isinstance(d, Dim)}

    def shape_at(self, which: Which, overrides: Mapping[str, int] | None = None) -> tuple[int, ...]:
        overrides = overrides or {}
        return tuple(
            (overrides.get(d.name, d.at(which)) if isinstance(d, Dim) else d) for d in self.shape
        )

    def shape_str(self) -> str:
        return "(" + ", ".join(d.name if isinstance(d, Dim) else str(d) for d in self.shape) + ")"


@dataclass(frozen=True)
class ArtifactSpec:
    """The interface of one exported network."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    doc: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def dims(self) -> dict[str, Dim]:
        out: dict[str, Dim] = {}
        for t in (*self.inputs, *self.outputs):
            for d in t.shape:
                if isinstance(d, Dim):
                    out.setdefault(d.name, d)
        return out

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        """``torch.onnx.export(dynamic_axes=...)`` for every tensor with a symbolic dim."""
        return {t.name: t.dynamic for t in (*self.inputs, *self.outputs) if t.dynamic}

    def profile(self, overrides: Mapping[str, Mapping[Which, int]] | None = None) -> dict[str, tuple[tuple[int, ...], ...]]:
        """TensorRT optimisation profile: input name -> (min, opt, max) shapes.

        ``overrides`` maps a dim name to new {"min"/"opt"/"max": value} (e.g. from --max-batch).
        """
        overrides = overrides or {}
        prof = {}
        for t in self.inputs:
            shapes = []
            for which in ("min", "opt", "max"):
                ov = {name: o[which] for name, o in overrides.items() if which in o}
                shapes.append(t.shape_at(which, ov))  # type: ignore[arg-type]
            prof[t.name] = tuple(shapes)
        return prof

    def dummy_inputs(self, which: Which = "opt", seed: int = 0, overrides: Mapping[str, int] | None = None) -> dict[str, np.ndarray]:
        """Random inputs of the profile shape ``which``; float32 N(0,1), ints in [0, 2)."""
        rng = np.random.default_rng(seed)
        dims = {n: d.at(which) for n, d in self.dims().items()} | dict(overrides or {})
        for a, b in self.extra.get("one_or_equal", ()):  # e.g. max: 64 prompts share one embedding
            if a in dims and b in dims and a not in (overrides or {}) and dims[a] not in (1, dims[b]):
                dims[a] = 1
        feeds = {}
        for t in self.inputs:
            shape = t.shape_at(which, dims)
            if t.dtype.startswith("float"):
                feeds[t.name] = rng.standard_normal(shape).astype(t.dtype)
            else:
                feeds[t.name] = rng.integers(0, 2, size=shape).astype(t.dtype)
        return feeds

    def check_inputs(self, feeds: Mapping[str, object]) -> dict[str, int]:
        """Validate names, dtypes, ranks and static dims; bind symbolic dims consistently.

        Returns the bound symbolic dims; raises InputError naming the tensor, what was
        expected and what came.
        """
        missing = [n for n in self.input_names if n not in feeds]
        extra = [n for n in feeds if n not in self.input_names]
        if missing or extra:
            raise InputError(
                f"{self.name}: inputs must be exactly {self.input_names}; missing {missing}, unexpected {extra}"
            )
        bound: dict[str, int] = {}
        for t in self.inputs:
            arr = feeds[t.name]
            shape = tuple(int(s) for s in arr.shape)  # type: ignore[attr-defined]
            dtype = str(getattr(arr, "dtype", "?")).replace("torch.", "")
            if dtype != t.dtype:
                raise InputError(f"{self.name}: input {t.name!r} must be {t.dtype}, got {dtype}")
            if len(shape) != len(t.shape):
                raise InputError(f"{self.name}: input {t.name!r} must have shape {t.shape_str()}, got {shape}")
            for axis, (want, got) in enumerate(zip(t.shape, shape)):
                if isinstance(want, Dim):
                    if want.name in bound and bound[want.name] != got:
                        raise InputError(
                            f"{self.name}: input {t.name!r} axis {axis} ({want.name}) is {got} but another input "
                            f"bound {want.name}={bound[want.name]}"
                        )
                    if got < 1:
                        raise InputError(f"{self.name}: input {t.name!r} axis {axis} ({want.name}) must be >= 1, got {got}")
                    bound[want.name] = got
                elif want != got:
                    raise InputError(f"{self.name}: input {t.name!r} must have shape {t.shape_str()}, got {shape}")
        for a, b in self.extra.get("one_or_equal", ()):
            if a in bound and b in bound and bound[a] not in (1, bound[b]):
                raise InputError(f"{self.name}: dim {a} must be 1 or equal to {b}={bound[b]}, got {bound[a]}")
        return bound
