"""Argument checks of the public API: typed errors that name the argument, what was expected and what came.

Every check runs before any runner, cache or state is touched, so a refused call changes nothing.
Unknown keyword arguments are refused too (with the closest known name), because swallowing a
misspelt option (``multimask_output`` for ``multi_mask_output``) silently does something else.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from sam2edge.errors import InputError

# Names users bring from other SAM APIs (official predictor, segment-anything, Roboflow) -> ours.
ALIASES = {  # names: api (argument names, not tensor names; see tests/contract/test_names_written_once.py)
    "multimask_output": "multi_mask_output",
    "point_coords": "point_coordinates",
    "points": "point_coordinates",
    "labels": "point_labels",
    "box": "boxes",
    "bboxes": "boxes",
    "mask_inputs": "mask_input",
    "image": "images",
    "image_hash": "image_hashes",
    "return_logits_only": "return_logits",
    "engines": "store_dir",
}


def check_kwargs(kwargs: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    """InputError for any keyword in ``kwargs`` that ``where`` does not take, with the closest known name."""
    if not kwargs:
        return
    known = sorted(set(known))
    problems = []
    for name in kwargs:
        hint = ALIASES.get(name) if ALIASES.get(name) in known else None
        if hint is None:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = close[0] if close else None
        problems.append(f"{name!r}" + (f" (did you mean {hint!r}?)" if hint else ""))
    raise InputError(f"{where} got unknown keyword argument(s) {', '.join(problems)}; it takes {known}")


def number(value: Any, name: str, minimum: float | None = None, allow_none: bool = False) -> float | None:
    """A finite real number (not a bool or a string), >= ``minimum`` when given."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise InputError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and out < minimum:
        raise InputError(f"{name} must be >= {minimum:g}, got {value!r}")
    return out


def positive_int(value: Any, name: str) -> int:
    """An integer >= 1 (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {type(value).__name__} {value!r}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    """A real bool (numpy bools too); a string like "false" would otherwise be truthy."""
    if not isinstance(value, bool | np.bool_):
        raise InputError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def image_size(value: Any, name: str) -> tuple[int, int]:
    """A (height, width) of positive integers."""
    try:
        h, w = value
    except (TypeError, ValueError):
        raise InputError(f"{name} must be (height, width), got {value!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1 for v in (h, w)):
        raise InputError(f"{name} must be (height, width) of positive integers, got {value!r}")
    return int(h), int(w)
