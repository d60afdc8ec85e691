"""A stand-in for the three torchvision transforms the official SAM2ImagePredictor imports.

There is no CPU build of torchvision on the package index this project's CI uses, and the
official predictor needs only ``ToTensor``, ``Resize`` and ``Normalize`` from it. These
implement their documented tensor semantics (torchvision >= 0.17):

* ToTensor: HWC uint8 numpy / PIL -> CHW float32 divided by 255 (other dtypes not scaled).
* Resize((h, w)) on a tensor: bilinear, antialias=True, align_corners=False.
* Normalize(mean, std): (x - mean) / std per channel.

They are installed into ``sys.modules`` only when a real torchvision cannot be imported,
and the oracle tests say so in their output.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class ToTensor:
    def __call__(self, pic):
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
        return t.float().div(255) if arr.dtype == np.uint8 else t


class Resize(nn.Module):
    def __init__(self, size: list[int]) -> None:
        super().__init__()
        self.size = [int(s) for s in size]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 3
        if squeeze:
            x = x.unsqueeze(0)
        y = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if squeeze:
            y = y.squeeze(0)
        return y


class Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


def install() -> str:
    """Make ``from torchvision.transforms import ...`` work; returns which one is used."""
    try:
        import torchvision.transforms  # noqa: F401

        return "torchvision"
    except Exception:
        pass
    tv = types.ModuleType("torchvision")
    tr = types.ModuleType("torchvision.transforms")
    tr.ToTensor, tr.Resize, tr.Normalize = ToTensor, Resize, Normalize
    tv.transforms = tr
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.transforms"] = tr
    return "tests/torchvision_shim.py (ToTensor/Resize/Normalize, bilinear antialias)"
