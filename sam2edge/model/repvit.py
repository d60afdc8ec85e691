"""RepViT-M1: EdgeTAM's convolutional image trunk, in our own code under timm's names.

EdgeTAM builds its trunk with ``timm.create_model("repvit_m1", features_only=True,
out_indices=(0, 1, 2, 3))`` and saves it under ``image_encoder.trunk.body.*``; the module
names here (``stem.conv1.c``, ``stages_2.blocks.5.token_mixer.conv.bn`` ...) are that
feature extractor's, so an official ``edgetam.pt`` loads with ``strict=True`` and no timm
(nor torchvision, which timm imports) is needed at run time.

The network as trained has training-time structure that inference does not need:

* every convolution is followed by a BatchNorm (``ConvNorm``: ``c`` + ``bn``);
* the token mixer adds three branches: a depthwise kxk conv, a depthwise 1x1 conv and
  the identity (RepVGG style).

:func:`reparameterize` rewrites both, in place, into plain convolutions with a bias (BN
folded into the kernel, the three branches summed into one kxk depthwise kernel), the form
exported graphs should hold. It changes the state-dict keys, so load weights before.

Shapes at 1024x1024 input: stages at strides 4, 8, 16, 32 with 48, 96, 192, 384 channels.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.config import RepViTConfig
from sam2edge.model.common import is_tracing


def _make_divisible(value: float, divisor: int) -> int:
    """Squeeze-excite width: ``value`` rounded to the nearest multiple of ``divisor`` (at least one)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class ConvNorm(nn.Module):
    """Convolution without bias followed by BatchNorm (``c`` and ``bn``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x))

    @torch.no_grad()
    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of the single convolution equal to conv + BN in eval mode.

        Computed in float64 and rounded once to the weights' dtype.
        """
        bn, w = self.bn, self.c.weight
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = bn.bias.double() - bn.running_mean.double() * scale
        return (w.double() * scale[:, None, None, None]).to(w.dtype), bias.to(w.dtype)

    def fused(self) -> nn.Conv2d:
        weight, bias = self.folded()
        return _conv_like(self.c, weight, bias)


def _conv_like(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A Conv2d with ``conv``'s geometry holding ``weight`` and ``bias``."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    groups=conv.groups, bias=True, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        out.weight.copy_(weight)
        out.bias.copy_(bias)
    return out


class RepVggDw(nn.Module):
    """Token mixer: depthwise kxk ConvNorm + depthwise 1x1 ConvNorm + identity (timm ``legacy=True``)."""

    def __init__(self, dim: int, kernel: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv = ConvNorm(dim, dim, kernel, groups=dim, eps=eps)
        self.conv1 = ConvNorm(dim, dim, 1, groups=dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.conv1(x) + x

    def fused(self) -> nn.Conv2d:
        """One depthwise kxk conv: the 1x1 kernel and the identity sit at the centre tap."""
        w, b = self.conv.folded()
        w1, b1 = self.conv1.folded()
        k = w.shape[-1]
        centre = torch.zeros_like(w, dtype=torch.float64)
        centre[:, :, k // 2, k // 2] = w1[:, :, 0, 0].double() + 1.0
        weight = (w.double() + centre).to(w.dtype)
        return _conv_like(self.conv.c, weight, (b.double() + b1.double()).to(b.dtype))


class SqueezeExcite(nn.Module):
    """Channel gating: global mean -> 1x1 conv -> ReLU -> 1x1 conv -> sigmoid, times the input."""

    def __init__(self, dim: int, ratio: float, divisor: int) -> None:
        super().__init__()
        hidden = _make_divisible(dim * ratio, divisor)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_tracing():
            # Exported graphs: mean over rows, then over columns. ONNX Runtime's one-pass ReduceMean over a
            # whole 256x256 map is 6x less precise than PyTorch's (8.7e-7 vs 1.5e-7 relative, measured); the
            # squeeze-excite gates scale whole maps, so across ten of them EdgeTAM's encoder drifted 1.1e-5
            # relative from float64. Two short reductions: 2.1e-7, same speed.
            pooled = x.mean(3, keepdim=True).mean(2, keepdim=True)
        else:
            pooled = x.mean((2, 3), keepdim=True)  # eager: the reference's op, bit for bit
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))


class ConvMlp(nn.Module):
    """1x1 ConvNorm -> GELU -> 1x1 ConvNorm (``conv1``, ``conv2``)."""

    def __init__(self, dim: int, hidden: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv1 = ConvNorm(dim, hidden, eps=eps)
        self.conv2 = ConvNorm(hidden, dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.gelu(self.conv1(x)))


class RepViTBlock(nn.Module):
    """Token mixer, optional squeeze-excite, then a residual channel MLP. [B,C,H,W] -> same."""

    def __init__(self, dim: int, cfg: RepViTConfig, use_se: bool) -> None:
        super().__init__()
        self.token_mixer = RepVggDw(dim, cfg.kernel_size, cfg.bn_eps)
        self.se = SqueezeExcite(dim, cfg.se_ratio, cfg.se_divisor) if use_se else nn.Identity()
        self.channel_mixer = ConvMlp(dim, dim * cfg.mlp_ratio, cfg.bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.token_mixer(x))
        return x + self.channel_mixer(x)


class Downsample(nn.Module):
    """Stage entry: a block without SE, depthwise stride-2 conv, 1x1 channel change, residual MLP."""

    def __init__(self, cin: int, cout: int, cfg: RepViTConfig) -> None:
        super().__init__()
        self.pre_block = RepViTBlock(cin, cfg, use_se=False)
        self.spatial_downsample = ConvNorm(cin, cin, cfg.kernel_size, stride=2, groups=cin, eps=cfg.bn_eps)
        self.channel_downsample = ConvNorm(cin, cout, eps=cfg.bn_eps)
        self.ffn = ConvMlp(cout, cout * cfg.mlp_ratio, cfg.bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_downsample(self.spatial_downsample(self.pre_block(x)))
        return x + self.ffn(x)


class Stage(nn.Module):
    """Optional downsample, then blocks whose squeeze-excite alternates on, off, on ..."""

    def __init__(self, cin: int, cout: int, depth: int, cfg: RepViTConfig, downsample: bool) -> None:
        super().__init__()
        self.downsample = Downsample(cin, cout, cfg) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*(RepViTBlock(cout, cfg, use_se=i % 2 == 0) for i in range(depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class Stem(nn.Module):
    """Two stride-2 3x3 ConvNorms with GELU between: [B,3,S,S] -> [B,C0,S/4,S/4]."""

    def __init__(self, cout: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, cout // 2, 3, stride=2, eps=eps)
        self.conv2 = ConvNorm(cout // 2, cout, 3, stride=2, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.gelu(self.conv1(x)))


class RepViTBody(nn.Module):
    """The feature extractor: stem, then ``stages_0`` .. ``stages_3`` (timm's flattened names)."""

    def __init__(self, cfg: RepViTConfig) -> None:
        super().__init__()
        self.stem = Stem(cfg.embed_dims[0], cfg.bn_eps)
        cin = cfg.embed_dims[0]
        for i, (cout, depth) in enumerate(zip(cfg.embed_dims, cfg.depths)):
            self.add_module(f"stages_{i}", Stage(cin, cout, depth, cfg, downsample=i > 0))
            cin = cout
        self.num_stages = len(cfg.depths)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for i in range(self.num_stages):
            x = getattr(self, f"stages_{i}")(x)
            feats.append(x)
        return feats


class RepViTTrunk(nn.Module):
    """EdgeTAM's trunk (official ``TimmBackbone``): image [B,3,S,S] -> 4 levels, highest resolution
    first, [B,48,S/4,S/4], [B,96,S/8,S/8], [B,192,S/16,S/16], [B,384,S/32,S/32]."""

    def __init__(self, cfg: RepViTConfig, image_size: int = 1024) -> None:
        super().__init__()
        self.cfg = cfg
        self.body = RepViTBody(cfg)
        side = image_size // 4
        self.grid_hw = (side, side)  # first level's grid (what ImageEncoder reads)
        self.channel_list = tuple(reversed(cfg.embed_dims))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body(x)


@torch.no_grad()
def reparameterize(module: nn.Module) -> nn.Module:
    """Replace, in place, every ConvNorm and RepVggDw inside ``module`` by one plain Conv2d.

    Outputs stay equal up to float rounding (about 1e-6 relative); state-dict keys change
    (``...c.weight`` + ``...bn.*`` become ``...weight`` / ``...bias``). Returns ``module``.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, (ConvNorm, RepVggDw)):
            setattr(module, name, child.fused())
        else:
            reparameterize(child)
    return module
