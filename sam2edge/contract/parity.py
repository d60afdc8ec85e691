"""How two runs of one artifact are compared: one set of figures for export and engine verification.

``compare_outputs(ref, got)`` gives, per output, the largest and mean absolute difference (float64
arithmetic; ``inf`` when the shapes differ or a NaN appears) and, for mask logits, the IoU of the
binarised masks (``> 0``) per mask plane, mean and minimum. The export stage checks ``max_abs_diff``
against :func:`sam2edge.contract.artifacts.tolerance`; engine verification records all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from sam2edge.contract.artifacts import Tensor

Figures = dict[str, dict[str, float]]


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (a > 0) and (b > 0) over the last two axes; 1.0 where both are empty."""
    pa, pb = a > 0, b > 0
    inter = np.logical_and(pa, pb).sum(axis=(-2, -1))
    union = np.logical_or(pa, pb).sum(axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def compare_outputs(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray],
                    names: Iterable[str] | None = None) -> Figures:
    """Per-output figures for ``names`` (default: every output of ``ref``); see the module docstring."""
    out: Figures = {}
    for name in ref if names is None else names:
        r = np.asarray(ref[name], dtype=np.float64)
        g = np.asarray(got[name], dtype=np.float64)
        if g.shape != r.shape:
            fig = {"max_abs_diff": float("inf"), "mean_abs_diff": float("inf")}
            if name == Tensor.MASKS:
                fig |= {"mask_iou_mean": 0.0, "mask_iou_min": 0.0}
            out[name] = fig
            continue
        diff = np.abs(g - r)
        nan = bool(np.isnan(diff).any())
        fig = {"max_abs_diff": float("inf") if nan else float(diff.max(initial=0.0)),
               "mean_abs_diff": float("inf") if nan else (float(diff.mean()) if diff.size else 0.0)}
        if name == Tensor.MASKS:
            iou = mask_iou(r, g)
            fig |= {"mask_iou_mean": float(iou.mean()), "mask_iou_min": float(iou.min())}
        out[name] = fig
    return out


def merge_figures(runs: Sequence[Figures]) -> Figures:
    """Worst case over several runs (max of diffs, min of IoU minima, mean of IoU means)."""
    merged: Figures = {}
    for run in runs:
        for name, fig in run.items():
            m = merged.setdefault(name, {})
            for k, v in fig.items():
                if k == "mask_iou_mean":
                    m[k] = m.get(k, 0.0) + v / len(runs)
                elif k == "mask_iou_min":
                    m[k] = min(m.get(k, 1.0), v)
                else:
                    m[k] = max(m.get(k, 0.0), v)
    return merged
