"""EdgeTAM's four artifacts, and the lookup from a model config to its set of specs.

EdgeTAM keeps SAM2's interfaces except for the memory: its memory encoder ends with the
spatial perceiver, so a memory frame is 512 latent tokens of 64 channels (256 global
latents, then 256 latents of a 16x16 grid) instead of a 64x64x64 grid. Memory attention
reads them as they are. Names, dtypes and every other shape are SAM2's, so the runtime's
host logic (memory bank, pointer selection, decoder) is shared; only the memory frame's
shape differs, and it is read from the spec.

Why the perceiver sits in the memory encoder and not in memory attention: the official model
compresses each memory frame right after encoding it (``SAM2Base._encode_new_memory``), from
that frame's features and mask alone (the latents are learned constants and the position
encodings constants too), and stores the compressed frame. Running it once per frame at
encode time is therefore exact, costs one perceiver pass per frame instead of one per frame
per later use, and the bank holds 128 KiB per object and frame instead of 1 MiB.

No heavy imports: numpy only.
"""

from __future__ import annotations

from sam2edge.config import EDGETAM, ModelConfig, get_config
from sam2edge.contract.artifacts import (
    ARTIFACTS,
    EMBED,
    GRID,
    IMAGE_ENCODER,
    MASK_SIDE,
    MEM,
    NUM_MEMORY_FRAMES,
    NUM_OBJ_PTRS,
    NUM_OBJECTS,
    PROMPT_DECODER,
    TOL_FEATURE,
    Artifact,
    Tensor,
)
from sam2edge.contract.spec import ArtifactSpec, TensorSpec

MEMORY_TOKENS = EDGETAM.memory_tokens_per_frame  # 512 latents per memory frame


def _f(name: str, shape: tuple, doc: str) -> TensorSpec:
    return TensorSpec(name, "float32", shape, doc)


def _i(name: str, shape: tuple, doc: str) -> TensorSpec:
    return TensorSpec(name, "int32", shape, doc)


# RepViT's 20 residual conv blocks carry fp32 rounding further than Hiera: PyTorch and ONNX Runtime each
# land 2-3e-6 of the largest feature from a float64 run of the same graph (measured, random weights with
# calibrated BatchNorm), so the two differ by up to ~5e-6 of it (1.2e-4 on features peaking at ~30).
# Bound: 1e-5 of the largest value (or 1e-4 absolute), twice the measured spread.
ENCODER_RELATIVE_TOLERANCE = 1e-5

EDGETAM_IMAGE_ENCODER = ArtifactSpec(
    name=IMAGE_ENCODER.name,
    doc="RepViT-M1 trunk (re-parameterised: BatchNorm folded, token-mixer branches merged) + FPN neck + "
        "the decoder's high-res projections (conv_s0/conv_s1).",
    inputs=IMAGE_ENCODER.inputs,
    outputs=IMAGE_ENCODER.outputs,
    extra={**IMAGE_ENCODER.extra, "relative_tolerance": ENCODER_RELATIVE_TOLERANCE},
)

EDGETAM_MEMORY_ATTENTION = ArtifactSpec(
    name=Artifact.MEMORY_ATTENTION,
    doc=(
        "Conditions the current frame's features on each object's memory bank (2 layers): F memory frames "
        "of 512 perceiver latents (the first 256 without RoPE, the last 256 rotated on a 16x16 grid) with "
        "their constant positions + temporal encoding, and K object pointers (4 tokens each). EdgeTAM's "
        "pointers carry no temporal position."
    ),
    inputs=(
        _f(Tensor.VISION_FEATURES, (1, EMBED, GRID, GRID),
           "image_encoder.vision_features of the current frame (shared by all objects)."),
        _f(Tensor.MEMORY, (NUM_OBJECTS, NUM_MEMORY_FRAMES, MEMORY_TOKENS, MEM),
           "memory_encoder.maskmem_features of the selected memory frames, per object (same frame order for "
           "every object). Conditioning frames first, then previous frames."),
        _i(Tensor.MEMORY_TPOS, (NUM_MEMORY_FRAMES,),
           "row of maskmem_tpos_enc per memory frame: num_maskmem-1 (6) for conditioning frames, k-1 for the "
           "frame k steps back (0 = previous frame)."),
        _f(Tensor.OBJ_PTRS, (NUM_OBJECTS, NUM_OBJ_PTRS, EMBED),
           "object pointers (prompt_decoder.obj_ptr rows, already gated), conditioning frames first."),
        _f(Tensor.OBJ_PTR_OFFSETS, (NUM_OBJ_PTRS,),
           "temporal offset of each pointer (as for SAM2); unused by EdgeTAM (zero encoding), kept so the "
           "tracker feeds every variant alike."),
    ),
    outputs=(
        _f(Tensor.IMAGE_EMBED, (NUM_OBJECTS, EMBED, GRID, GRID),
           "memory-conditioned features per object: feed row i (batch 1) to prompt_decoder.image_embed."),
    ),
    extra={"tolerance": {Tensor.IMAGE_EMBED: TOL_FEATURE}},
)

EDGETAM_MEMORY_ENCODER = ArtifactSpec(
    name=Artifact.MEMORY_ENCODER,
    doc=(
        "Encodes a frame's features with each object's predicted mask into a memory frame and compresses it "
        "with the spatial perceiver. The graph upsamples the mask to 1024 (bilinear), applies sigmoid (or > 0 "
        "for prompted frames), x20-10, runs the mask downsampler + fuser, then the perceiver (256 global "
        "latents over the whole frame, 256 latents over 4x4 windows)."
    ),
    inputs=(
        _f(Tensor.VISION_FEATURES, (1, EMBED, GRID, GRID), "image_encoder.vision_features of the frame (raw)."),
        _f(Tensor.MASK_LOGITS, (NUM_OBJECTS, 1, MASK_SIDE, MASK_SIDE),
           "the chosen mask's logits per object, already set to -1024 where the object is absent: the "
           "decoder's 256x256 low-res mask, or a 1024x1024 mask for mask-input frames (mask*20-10)."),
        _f(Tensor.IS_MASK_FROM_POINTS, (NUM_OBJECTS,),
           "1.0: binarise the mask (> 0) as for frames with point/box prompts; 0.0: sigmoid."),
        _f(Tensor.OBJECT_SCORE_LOGITS, (NUM_OBJECTS, 1),
           "the object score of that prediction (EdgeTAM has no no-object spatial embedding: unused, kept "
           "so the tracker feeds every variant alike)."),
    ),
    outputs=(
        _f(Tensor.MASKMEM_FEATURES, (NUM_OBJECTS, MEMORY_TOKENS, MEM),
           "the compressed memory frame to store in the object's bank (memory_attention.memory row)."),
    ),
    extra={"tolerance": {Tensor.MASKMEM_FEATURES: TOL_FEATURE}},
)

EDGETAM_ARTIFACTS: dict[str, ArtifactSpec] = {
    s.name: s for s in (EDGETAM_IMAGE_ENCODER, PROMPT_DECODER, EDGETAM_MEMORY_ATTENTION, EDGETAM_MEMORY_ENCODER)
}


def specs_for(config: ModelConfig) -> dict[str, ArtifactSpec]:
    """The four artifact specs of a variant, by name (same names and order for every family)."""
    if config.family == "edgetam":
        return EDGETAM_ARTIFACTS
    if config.family == "sam2":
        return ARTIFACTS
    raise ValueError(f"no artifact specs for model family {config.family!r} ({config.name})")


def specs_for_variant(variant: str | None) -> dict[str, ArtifactSpec]:
    """The specs of a variant named in a manifest (None: an export without one, SAM2's specs)."""
    return ARTIFACTS if variant is None else specs_for(get_config(variant))
