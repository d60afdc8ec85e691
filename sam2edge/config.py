"""Model configurations for the eight official SAM2 / SAM2.1 variants and EdgeTAM.

One frozen dataclass per variant, one registry, and one resolver that accepts the
official names (``sam2.1_hiera_tiny``, ``sam2_hiera_b+`` ...), the config-file stems
(``sam2.1_hiera_t``) and the seed document's ids (``sam2/hiera_tiny`` ... which mean
the SAM2.1 checkpoints). EdgeTAM (family ``edgetam``) is SAM2 with a RepViT-M1 trunk, a
2-layer memory attention and a spatial perceiver that compresses each memory frame.

Nothing here imports PyTorch: the runtime uses these configs without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sam2edge.errors import UnknownModelError

IMAGE_SIZE = 1024
BACKBONE_STRIDE = 16
EMBED_DIM = 256  # transformer / decoder width shared by every size
MEM_DIM = 64  # memory-bank channel width
FEAT_SIZES = ((256, 256), (128, 128), (64, 64))  # neck levels kept after scalp=1


@dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk hyper-parameters (sam2/modeling/backbones/hieradet.py)."""

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0
    patch_kernel: int = 7
    patch_stride: int = 4
    patch_padding: int = 3

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels per stage, highest resolution first."""
        return tuple(int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages)))

    @property
    def depth(self) -> int:
        return sum(self.stages)


@dataclass(frozen=True)
class RepViTConfig:
    """RepViT trunk hyper-parameters (timm ``repvit_m1``, features_only, all four stages)."""

    embed_dims: tuple[int, ...] = (48, 96, 192, 384)
    depths: tuple[int, ...] = (2, 2, 14, 2)
    mlp_ratio: int = 2
    kernel_size: int = 3
    se_ratio: float = 0.25
    se_divisor: int = 8
    bn_eps: float = 1e-5

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels per stage, highest resolution first."""
        return self.embed_dims

    @property
    def stages(self) -> tuple[int, ...]:
        """Blocks per stage (the name Hiera uses too)."""
        return self.depths

    @property
    def depth(self) -> int:
        return sum(self.depths)


@dataclass(frozen=True)
class PerceiverConfig:
    """EdgeTAM's 2-D spatial perceiver: compresses one memory frame into latents.

    ``num_latents`` global latents read the whole frame (with its position encoding);
    ``num_latents_2d`` latents, one per window of a sqrt(n) x sqrt(n) grid of windows, read
    only their window. Both go through the same ``depth`` layers.
    """

    dim: int = 64
    depth: int = 2
    dim_head: int = 64
    heads: int = 1
    ff_mult: int = 4
    num_latents: int = 256
    num_latents_2d: int = 256
    use_self_attn: bool = True

    @property
    def grid_2d(self) -> int:
        """Side of the 2-D latent grid (16 for 256 latents)."""
        return int(round(self.num_latents_2d**0.5))

    @property
    def tokens(self) -> int:
        """Memory tokens per frame after compression (512)."""
        return self.num_latents + self.num_latents_2d


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build one official variant at ``image_size``."""

    name: str  # official checkpoint stem, e.g. "sam2.1_hiera_tiny"
    version: str  # "sam2", "sam2.1" or "edgetam"
    size: str  # "tiny" | "small" | "base_plus" | "large" | "repvit_m1"
    trunk: HieraConfig | RepViTConfig
    url: str
    sha256: str  # "" where no hash is published (EdgeTAM): downloads then need one given explicitly
    aliases: tuple[str, ...] = ()
    family: str = "sam2"  # "sam2" (SAM2 and SAM2.1, Hiera) or "edgetam"
    image_size: int = IMAGE_SIZE
    d_model: int = EMBED_DIM
    mem_dim: int = MEM_DIM
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1
    memory_attention_layers: int = 4
    # EdgeTAM: each memory frame is compressed to latents before it is stored (None: 64x64 tokens).
    perceiver: PerceiverConfig | None = None
    # Memory-path switches that differ between SAM2 and SAM2.1.
    no_obj_embed_spatial: bool = False
    add_tpos_enc_to_obj_ptrs: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    # Mask-decoder post-processing turned on by build_sam2(apply_postprocessing=True).
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def backbone_channel_list(self) -> tuple[int, ...]:
        """Neck input channels, lowest resolution first (the official order)."""
        return tuple(reversed(self.trunk.channels))

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 at 1024 input)."""
        return self.image_size // BACKBONE_STRIDE

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"

    @property
    def memory_tokens_per_frame(self) -> int:
        """Tokens one memory frame contributes to memory attention (4096, or 512 for EdgeTAM)."""
        if self.perceiver is not None:
            return self.perceiver.tokens
        return self.embedding_size**2


_TRUNKS = {
    "tiny": HieraConfig(96, 1, (1, 2, 7, 2), (5, 7, 9)),
    "small": HieraConfig(96, 1, (1, 2, 11, 2), (7, 10, 13)),
    "base_plus": HieraConfig(112, 2, (2, 3, 16, 3), (12, 16, 20), window_pos_embed_bkg_spatial_size=(14, 14)),
    "large": HieraConfig(144, 2, (2, 6, 36, 4), (23, 33, 43), window_spec=(8, 4, 16, 8)),
}
_SHORT = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}
_SEED_IDS = {"tiny": "sam2/hiera_tiny", "small": "sam2/hiera_small", "base_plus": "sam2/hiera_b_plus", "large": "sam2/hiera_large"}
_URL_DIRS = {"sam2.1": "https://dl.fbaipublicfiles.com/segment_anything_2/092824", "sam2": "https://dl.fbaipublicfiles.com/segment_anything_2/072824"}
_SHA256 = {
    "sam2.1_hiera_tiny": "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
    "sam2.1_hiera_small": "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
    "sam2.1_hiera_base_plus": "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
    "sam2.1_hiera_large": "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
    "sam2_hiera_tiny": "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125",
    "sam2_hiera_small": "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3",
    "sam2_hiera_base_plus": "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071",
    "sam2_hiera_large": "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b",
}


def _make(version: str, size: str) -> ModelConfig:
    name = f"{version}_hiera_{size}"
    short = f"{version}_hiera_{_SHORT[size]}"
    # "sam2/hiera_*" ids belong to the seed document and mean SAM2.1; no "/" alias otherwise.
    aliases = {short, f"{version}_hiera_{size.replace('_', '')}", f"{version}-hiera-{size}"}
    if version == "sam2.1":
        aliases.add(_SEED_IDS[size])
    if size == "base_plus":
        aliases |= {f"{version}_hiera_b_plus", f"{version}_hiera_bplus"}
    is21 = version == "sam2.1"
    return ModelConfig(
        name=name,
        version=version,
        size=size,
        trunk=_TRUNKS[size],
        url=f"{_URL_DIRS[version]}/{name}.pt",
        sha256=_SHA256[name],
        aliases=tuple(sorted(aliases - {name})),
        no_obj_embed_spatial=is21,
        add_tpos_enc_to_obj_ptrs=is21,
        proj_tpos_enc_in_obj_ptrs=is21,
        use_signed_tpos_enc_to_obj_ptrs=is21,
    )


# EdgeTAM (facebookresearch/EdgeTAM, configs/edgetam.yaml). Its memory path is SAM2.0-style: no
# temporal encoding of object pointers, no no-object spatial embedding. The checkpoint is a plain
# git blob (abd54d22bbd22ba3e53cf59a307e59e0f3701be6) of that repository; no sha256 is published.
EDGETAM = ModelConfig(
    name="edgetam",
    version="edgetam",
    size="repvit_m1",
    trunk=RepViTConfig(),
    url="https://github.com/facebookresearch/EdgeTAM/raw/main/checkpoints/edgetam.pt",
    sha256="",
    aliases=("edge_tam", "edge-tam", "facebook/edgetam", "configs/edgetam"),
    family="edgetam",
    fpn_top_down_levels=(2, 3),
    memory_attention_layers=2,
    perceiver=PerceiverConfig(),
)

REGISTRY: dict[str, ModelConfig] = {
    cfg.name: cfg for cfg in (_make(v, s) for v in ("sam2.1", "sam2") for s in ("tiny", "small", "base_plus", "large"))
}
REGISTRY[EDGETAM.name] = EDGETAM
_ALIASES: dict[str, str] = {a.lower(): cfg.name for cfg in REGISTRY.values() for a in (cfg.name, *cfg.aliases)}


FAMILIES = ("sam2", "edgetam")


def variant_names(family: str | None = None) -> list[str]:
    """Official names of the registered variants (SAM2.1 first, EdgeTAM last), or of one family."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return [name for name, cfg in REGISTRY.items() if family is None or cfg.family == family]


def resolve_name(name: str) -> str:
    """Return the official variant name for any accepted alias, or raise UnknownModelError."""
    key = name.strip().lower()
    if key.endswith(".pt"):
        key = key[:-3]
    if key.endswith(".yaml"):
        key = key[:-5]
    key = key.replace("configs/sam2.1/", "").replace("configs/sam2/", "")
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownModelError(
        f"model name {name!r} is not a known SAM2 variant (or EdgeTAM); expected one of "
        f"{sorted(REGISTRY)} or the seed ids {sorted(_SEED_IDS.values())}"
    )


def get_config(name: str) -> ModelConfig:
    """The frozen config for a variant name or alias."""
    return REGISTRY[resolve_name(name)]
