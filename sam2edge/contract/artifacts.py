"""The four exported artifacts, specified once.

Every name, dtype and symbolic dim of the ONNX graphs (and of the TensorRT engines built
from them) is defined here; the wrappers, the exporter, the verifier, the runners and the
TensorRT profiles all read it from these specs.

Conventions shared by all four:

* fp32 everywhere except integer prompt labels / indices (int32, TensorRT-friendly).
* Images and features are NCHW; 64x64 is the embedding grid of a 1024x1024 input.
* Objects (video) are batched on axis 0; a frame's features come with batch 1 and are
  broadcast inside the graph, so the host never copies them per object.
* Everything that needs weights (temporal tables, sine encodings, pointer projection,
  object-score gating, the no-object embedding) is inside the graphs; the video tracker's
  host logic is numpy only (see ``HOST_CONSTANTS`` in the manifest for the two small
  exceptions used by mask-input frames).

No heavy imports: numpy only.
"""

from __future__ import annotations

from sam2edge.contract.spec import ArtifactSpec, Dim, TensorSpec


class Artifact:
    """Artifact names: the ONNX/engine file stems and the keys of every runner mapping."""

    IMAGE_ENCODER = "image_encoder"
    PROMPT_DECODER = "prompt_decoder"
    MEMORY_ATTENTION = "memory_attention"
    MEMORY_ENCODER = "memory_encoder"
    IMAGE = (IMAGE_ENCODER, PROMPT_DECODER)  # what the image API needs
    ALL = (IMAGE_ENCODER, PROMPT_DECODER, MEMORY_ATTENTION, MEMORY_ENCODER)  # in pipeline order


class Tensor:
    """Tensor names of the four artifacts (inputs and outputs); see each spec for shapes and meaning."""

    IMAGE = "image"
    IMAGE_EMBED = "image_embed"
    HIGH_RES_0 = "high_res_feats_0"
    HIGH_RES_1 = "high_res_feats_1"
    VISION_FEATURES = "vision_features"
    POINT_COORDS = "point_coords"
    POINT_LABELS = "point_labels"
    MASK_INPUT = "mask_input"
    HAS_MASK_INPUT = "has_mask_input"
    MASKS = "masks"
    IOU_PREDICTIONS = "iou_predictions"
    OBJECT_SCORE_LOGITS = "object_score_logits"
    MASK_TOKENS = "mask_tokens"
    OBJ_PTR = "obj_ptr"
    MEMORY = "memory"
    MEMORY_TPOS = "memory_tpos"
    OBJ_PTRS = "obj_ptrs"
    OBJ_PTR_OFFSETS = "obj_ptr_offsets"
    MASK_LOGITS = "mask_logits"
    IS_MASK_FROM_POINTS = "is_mask_from_points"
    MASKMEM_FEATURES = "maskmem_features"


# -- symbolic dims (min, opt, max) ---------------------------------------------------
BATCH = Dim("batch", 1, 1, 8)
NUM_PROMPTS = Dim("num_prompts", 1, 1, 64)
NUM_POINTS = Dim("num_points", 1, 2, 32)
NUM_OBJECTS = Dim("num_objects", 1, 1, 8)
NUM_MEMORY_FRAMES = Dim("num_memory_frames", 1, 7, 16)
NUM_OBJ_PTRS = Dim("num_obj_ptrs", 1, 16, 32)
MASK_SIDE = Dim("mask_side", 256, 256, 1024)

IMAGE_SIZE = 1024
EMBED = 256  # d_model
MEM = 64  # mem_dim
GRID = 64  # embedding grid side
LOW_RES = 256  # decoder mask side
NUM_MASK_TOKENS = 4

# Verification tolerances (fp32): absolute, features/embeddings vs logits ...
TOL_FEATURE = 1e-4
TOL_LOGIT = 1e-3
# ... widened only for outputs whose values exceed ~32 in magnitude (deep variants with large
# activations): the bound is max(abs tolerance, TOL_RELATIVE * max|reference|). 3e-6 is ~25 fp32
# ulps of the largest value, the spread of GEMM accumulation order between two fp32 runtimes.
TOL_RELATIVE = 3e-6


def _f(name: str, shape: tuple, doc: str) -> TensorSpec:
    return TensorSpec(name, "float32", shape, doc)


def _i(name: str, shape: tuple, doc: str) -> TensorSpec:
    return TensorSpec(name, "int32", shape, doc)


IMAGE_ENCODER = ArtifactSpec(
    name=Artifact.IMAGE_ENCODER,
    doc="Hiera trunk + FPN neck + the decoder's high-res projections (conv_s0/conv_s1).",
    inputs=(
        _f(Tensor.IMAGE, (BATCH, 3, IMAGE_SIZE, IMAGE_SIZE),
           "RGB image stretched to 1024x1024, /255, ImageNet mean/std normalised."),
    ),
    outputs=(
        _f(Tensor.IMAGE_EMBED, (BATCH, EMBED, GRID, GRID),
           "64x64 features + no_mem_embed: the prompt decoder's image input for still images and "
           "for the first (unconditioned) video frame."),
        _f(Tensor.HIGH_RES_0, (BATCH, 32, 256, 256), "conv_s0 of the 256x256 neck level."),
        _f(Tensor.HIGH_RES_1, (BATCH, 64, 128, 128), "conv_s1 of the 128x128 neck level."),
        _f(Tensor.VISION_FEATURES, (BATCH, EMBED, GRID, GRID),
           "raw 64x64 neck features (no no_mem_embed): input of memory attention and memory encoder."),
    ),
    extra={"tolerance": {Tensor.IMAGE_EMBED: TOL_FEATURE, Tensor.HIGH_RES_0: TOL_FEATURE,
                         Tensor.HIGH_RES_1: TOL_FEATURE, Tensor.VISION_FEATURES: TOL_FEATURE}},
)

PROMPT_DECODER = ArtifactSpec(
    name=Artifact.PROMPT_DECODER,
    doc=(
        "Prompt encoder + mask decoder + object-pointer projection for N prompts on one image, "
        "sharing its embedding (image mode) or each with its own (video: the memory-conditioned "
        "embedding of each tracked object, all objects of a frame in one call). "
        "All four mask tokens are returned; single/multi-mask selection, the stability fallback, "
        "the video no-object mask gating and upsampling stay on the host."
    ),
    inputs=(
        _f(Tensor.IMAGE_EMBED, (NUM_OBJECTS, EMBED, GRID, GRID),
           "num_objects must be 1 or num_prompts: image_encoder.image_embed of one image (shared by all "
           "prompts), or memory_attention.image_embed with one row per prompt (one per tracked object)."),
        _f(Tensor.HIGH_RES_0, (1, 32, 256, 256), "image_encoder.high_res_feats_0 of the same image."),
        _f(Tensor.HIGH_RES_1, (1, 64, 128, 128), "image_encoder.high_res_feats_1 of the same image."),
        _f(Tensor.POINT_COORDS, (NUM_PROMPTS, NUM_POINTS, 2),
           "(x, y) in 1024x1024 input pixels (x*1024/W, y*1024/H). A box is two points placed first. "
           "Do NOT append the padding point: the graph adds it."),
        _i(Tensor.POINT_LABELS, (NUM_PROMPTS, NUM_POINTS),
           "1 positive, 0 negative, 2 box top-left, 3 box bottom-right, -1 padding (ignored point)."),
        _f(Tensor.MASK_INPUT, (NUM_PROMPTS, 1, LOW_RES, LOW_RES),
           "previous low-res mask logits (e.g. clamped to +-32); any values when has_mask_input is 0."),
        _f(Tensor.HAS_MASK_INPUT, (NUM_PROMPTS,),
           "1.0 to use mask_input, 0.0 to use the learned no-mask embedding (exactly 0 or 1)."),
    ),
    outputs=(
        _f(Tensor.MASKS, (NUM_PROMPTS, NUM_MASK_TOKENS, LOW_RES, LOW_RES),
           "low-res mask logits of all 4 tokens (0 = single-mask output, 1..3 = multimask)."),
        _f(Tensor.IOU_PREDICTIONS, (NUM_PROMPTS, NUM_MASK_TOKENS), "predicted IoU per token (sigmoid)."),
        _f(Tensor.OBJECT_SCORE_LOGITS, (NUM_PROMPTS, 1), "object presence logit (> 0: present)."),
        _f(Tensor.MASK_TOKENS, (NUM_PROMPTS, NUM_MASK_TOKENS, EMBED), "decoder output token per mask token."),
        _f(Tensor.OBJ_PTR, (NUM_PROMPTS, NUM_MASK_TOKENS, EMBED),
           "object pointer per token: obj_ptr_proj(token), gated by object presence "
           "(present ? ptr : no_obj_ptr); the tracker keeps the row of the selected mask."),
    ),
    extra={"tolerance": {Tensor.MASKS: TOL_LOGIT, Tensor.IOU_PREDICTIONS: TOL_FEATURE, Tensor.OBJECT_SCORE_LOGITS: TOL_LOGIT,
                         Tensor.MASK_TOKENS: TOL_FEATURE, Tensor.OBJ_PTR: TOL_FEATURE},
           # Checked at run time (the graph itself would silently reuse rows for any other size).
           "one_or_equal": (("num_objects", "num_prompts"),)},
)

MEMORY_ATTENTION = ArtifactSpec(
    name=Artifact.MEMORY_ATTENTION,
    doc=(
        "Conditions the current frame's features on each object's memory bank: F memory frames "
        "(spatial, with sine + temporal position) and K object pointers (4 tokens each, with the "
        "projected sine temporal position). Real-valued axial RoPE."
    ),
    inputs=(
        _f(Tensor.VISION_FEATURES, (1, EMBED, GRID, GRID),
           "image_encoder.vision_features of the current frame (shared by all objects)."),
        _f(Tensor.MEMORY, (NUM_OBJECTS, NUM_MEMORY_FRAMES, MEM, GRID, GRID),
           "memory_encoder.maskmem_features of the selected memory frames, per object (same frame "
           "order for every object). Conditioning frames first, then previous frames."),
        _i(Tensor.MEMORY_TPOS, (NUM_MEMORY_FRAMES,),
           "row of maskmem_tpos_enc per memory frame: num_maskmem-1 (6) for conditioning frames, "
           "k-1 for the frame k steps back (0 = previous frame)."),
        _f(Tensor.OBJ_PTRS, (NUM_OBJECTS, NUM_OBJ_PTRS, EMBED),
           "object pointers (prompt_decoder.obj_ptr rows, already gated), conditioning frames first."),
        _f(Tensor.OBJ_PTR_OFFSETS, (NUM_OBJ_PTRS,),
           "temporal offset of each pointer, normalised: (frame_idx - t) / (min(num_frames, "
           "max_obj_ptrs_in_encoder) - 1), signed (negated when tracking in reverse); unused (zero "
           "encoding) for SAM2.0 variants."),
    ),
    outputs=(
        _f(Tensor.IMAGE_EMBED, (NUM_OBJECTS, EMBED, GRID, GRID),
           "memory-conditioned features per object: feed row i (batch 1) to prompt_decoder.image_embed."),
    ),
    extra={"tolerance": {Tensor.IMAGE_EMBED: TOL_FEATURE}},
)

MEMORY_ENCODER = ArtifactSpec(
    name=Artifact.MEMORY_ENCODER,
    doc=(
        "Encodes a frame's features with each object's predicted mask into a memory frame. The graph "
        "upsamples the mask to 1024 (bilinear), applies sigmoid (or > 0 for prompted frames), x20-10, "
        "runs the mask downsampler + fuser, and adds no_obj_embed_spatial where the object is absent."
    ),
    inputs=(
        _f(Tensor.VISION_FEATURES, (1, EMBED, GRID, GRID), "image_encoder.vision_features of the frame (raw)."),
        _f(Tensor.MASK_LOGITS, (NUM_OBJECTS, 1, MASK_SIDE, MASK_SIDE),
           "the chosen mask's logits per object, already set to -1024 where the object is absent: the "
           "decoder's 256x256 low-res mask, or a 1024x1024 mask for mask-input frames (mask*20-10)."),
        _f(Tensor.IS_MASK_FROM_POINTS, (NUM_OBJECTS,),
           "1.0: binarise the mask (> 0) as for frames with point/box prompts; 0.0: sigmoid."),
        _f(Tensor.OBJECT_SCORE_LOGITS, (NUM_OBJECTS, 1),
           "the object score of that prediction; <= 0 adds no_obj_embed_spatial (SAM2.1)."),
    ),
    outputs=(
        _f(Tensor.MASKMEM_FEATURES, (NUM_OBJECTS, MEM, GRID, GRID),
           "the memory frame to store in the object's bank (memory_attention.memory row)."),
    ),
    extra={"tolerance": {Tensor.MASKMEM_FEATURES: TOL_FEATURE}},
)

ARTIFACTS: dict[str, ArtifactSpec] = {
    s.name: s for s in (IMAGE_ENCODER, PROMPT_DECODER, MEMORY_ATTENTION, MEMORY_ENCODER)
}


def get_artifact(name: str) -> ArtifactSpec:
    """The spec of an artifact by name; raises KeyError naming the known ones."""
    try:
        return ARTIFACTS[name]
    except KeyError:
        raise KeyError(f"unknown artifact {name!r}; known: {sorted(ARTIFACTS)}") from None


def tolerance(spec: ArtifactSpec, output: str, reference_max_abs: float = 0.0) -> float:
    """The fp32 verification bound of one output: its absolute tolerance, or the spec's relative
    tolerance (default TOL_RELATIVE) of the reference's largest magnitude when that is larger."""
    atol = float(spec.extra.get("tolerance", {}).get(output, TOL_FEATURE))
    return max(atol, float(spec.extra.get("relative_tolerance", TOL_RELATIVE)) * float(reference_max_abs))
