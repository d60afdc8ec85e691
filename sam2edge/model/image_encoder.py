"""Image encoder: Hiera (SAM2) or RepViT (EdgeTAM) trunk + FPN neck, returning the three feature levels SAM2 uses.

State-dict names match the official ``ImageEncoder`` (``trunk.*``, ``neck.convs.{i}.conv.*``).
The neck's sine position encodings depend only on the feature sizes, so they are constants:
the 64² one is a non-persistent buffer (``vision_pos``); the larger levels (64 MiB at 256²)
are built on request by :meth:`ImageEncoder.position_encodings`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.config import ModelConfig, RepViTConfig
from sam2edge.model.common import sine_position_encoding_2d
from sam2edge.model.hiera import Hiera
from sam2edge.model.repvit import RepViTTrunk


class _Lateral(nn.Module):
    """Wrapper that only exists to keep the official key ``convs.{i}.conv.*``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class FpnNeck(nn.Module):
    """Feature pyramid without output convs: 1x1 laterals, nearest x2 top-down sums on some levels.

    ``backbone_channel_list`` is lowest resolution first (official order), so ``convs.0`` takes the
    coarsest trunk level. ``top_down_levels`` index levels highest resolution first (level 0 = 256²);
    a level outside it keeps its lateral features only, and the top-down chain restarts from it.
    """

    def __init__(self, d_model: int, backbone_channel_list: tuple[int, ...], top_down_levels: tuple[int, ...]) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = tuple(backbone_channel_list)
        self.top_down_levels = frozenset(top_down_levels)
        self.convs = nn.ModuleList(_Lateral(c, d_model) for c in backbone_channel_list)

    def lateral(self, level: int) -> nn.Conv2d:
        """The 1x1 conv of a level (level 0 = highest resolution)."""
        return self.convs[len(self.convs) - 1 - level].conv

    def bare_levels(self) -> tuple[int, ...]:
        """Leading levels whose output is their lateral conv alone and that no finer level reads.

        A level is bare when neither it nor any finer level takes a top-down sum; its output can
        then be composed with a following 1x1 conv into a single one (see ``SAM2.encode_image``).
        """
        bare = []
        for level in range(len(self.convs)):
            if level in self.top_down_levels:
                break
            bare.append(level)
        return tuple(bare)

    def forward(self, xs: list[torch.Tensor], skip: tuple[int, ...] = ()) -> list[torch.Tensor | None]:
        """xs: trunk levels highest resolution first, [B, C_i, H_i, W_i] -> same order, d_model channels.

        Levels in ``skip`` (a subset of ``bare_levels()``) are not computed and come back as None.
        """
        if skip and not set(skip) <= set(self.bare_levels()):
            raise ValueError(f"skip={skip} must be bare levels {self.bare_levels()}")
        n = len(self.convs) - 1
        coarse_first: list[torch.Tensor | None] = []
        prev: torch.Tensor | None = None
        for level in range(n, -1, -1):
            if level in skip:
                coarse_first.append(None)
                continue
            lateral = self.convs[n - level](xs[level])
            if prev is not None and level in self.top_down_levels:
                prev = lateral + F.interpolate(prev, scale_factor=2.0, mode="nearest")
            else:
                prev = lateral
            coarse_first.append(prev)
        return coarse_first[::-1]


class ImageEncoder(nn.Module):
    """image [B, 3, S, S] (normalised) -> neck features after scalp, highest resolution first.

    At S = 1024: ([B,256,256,256], [B,256,128,128], [B,256,64,64]).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.scalp = cfg.scalp
        if isinstance(cfg.trunk, RepViTConfig):
            self.trunk: nn.Module = RepViTTrunk(cfg.trunk, cfg.image_size)
        else:
            self.trunk = Hiera(cfg.trunk, cfg.image_size)
        self.neck = FpnNeck(cfg.d_model, cfg.backbone_channel_list, cfg.fpn_top_down_levels)
        levels = len(cfg.trunk.stages) - cfg.scalp
        self.feat_sizes = tuple(self.trunk.grid_hw[0] // 2**i for i in range(levels))
        side = self.feat_sizes[-1]
        self.register_buffer("vision_pos", sine_position_encoding_2d(side, side, cfg.d_model), persistent=False)

    def position_encodings(self) -> tuple[torch.Tensor, ...]:
        """Sine position encodings [1, d_model, H_i, W_i] of every kept level, highest resolution first."""
        pos = [sine_position_encoding_2d(s, s, self.cfg.d_model) for s in self.feat_sizes[:-1]]
        device, dtype = self.vision_pos.device, self.vision_pos.dtype
        return (*(p.to(device=device, dtype=dtype) for p in pos), self.vision_pos)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.neck(self.trunk(image))
        return tuple(feats[: len(feats) - self.scalp])
