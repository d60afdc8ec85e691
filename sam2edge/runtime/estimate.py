"""Expected memory of each backend, from manifests where they exist and a documented estimate otherwise.

need(backend) = weights + activations(batch) + io buffers + runtime overhead

* **weights**: TensorRT: the engine files' sizes (a plan holds its weights); ONNX Runtime: the
  ONNX files' sizes (fp32 initializers); PyTorch: official parameter count x 4 bytes.
* **activations**: TensorRT: the execution contexts' device memory recorded at build time
  (``ICudaEngine.device_memory_size_v2`` for the largest profile, summed: each runner holds its
  own context). Elsewhere, an estimate of the peak intermediate memory, per image (or per
  object for video), for frameworks that materialise attention scores:

    encoder = LIVE x max(stage-1 MLP hidden, stage-3 global attention scores)
            = LIVE x max((S/4)^2 * C1 * mlp_ratio, H3 * (S/16)^4) * 4 bytes
    video   = LIVE x 4096 x (F*T + 4*P) * 4 bytes        (memory-attention cross scores)

  with S = 1024, C1 the trunk's first width, H3 its heads at stage 3, F memory frames, T tokens
  per memory frame (4096; EdgeTAM: 512 perceiver latents), P object pointers and LIVE = 3
  tensors of that size alive at once. (tiny: 0.8 GB/image, large: 1.6 GB; video: 1.4 GB/object
  at F=7, EdgeTAM 0.18 GB; EdgeTAM's convolutional encoder: stage 1's MLP, 0.08 GB/image.)
  Fused attention (TensorRT, PyTorch SDPA) needs less: the estimate errs on the safe side.
* **overhead**: CUDA context and library kernels/handles, measured orders of magnitude:
  TensorRT 300 MiB, ONNX Runtime CUDA 600 MiB (cuDNN/cuBLAS), PyTorch CUDA 800 MiB.

Pure functions over configs and recorded numbers; nothing here touches a device.
"""

from __future__ import annotations

from sam2edge.backends import registry
from sam2edge.config import RepViTConfig, get_config

MiB = 2**20
LIVE = 3
# Official parameter counts in millions (sam2 README / measured on the official package).
PARAMS_M = {"tiny": 38.9, "small": 46.0, "base_plus": 80.8, "large": 224.4, "repvit_m1": 13.9}  # repvit_m1: EdgeTAM
VIDEO_MEMORY_FRAMES = 7
VIDEO_OBJ_PTRS = 16


def torch_weights_bytes(variant: str, dtype_bytes: int = 4) -> int:
    return int(PARAMS_M[get_config(variant).size] * 1e6 * dtype_bytes)


def encoder_activation_bytes(variant: str, dtype_bytes: int = 4) -> int:
    """Peak intermediate memory of one image through the image encoder (unfused attention)."""
    cfg = get_config(variant)
    t = cfg.trunk
    if isinstance(t, RepViTConfig):  # convolutional: the largest map is stage 1's MLP hidden layer
        return int(LIVE * (cfg.image_size // 4) ** 2 * t.embed_dims[0] * t.mlp_ratio * dtype_bytes)
    tokens1 = (cfg.image_size // t.patch_stride) ** 2
    mlp = tokens1 * t.embed_dim * t.mlp_ratio
    heads3 = t.num_heads * t.head_mul ** 2
    grid = cfg.image_size // 16
    scores = heads3 * grid**4
    return int(LIVE * max(mlp, scores) * dtype_bytes)


def video_activation_bytes(memory_frames: int = VIDEO_MEMORY_FRAMES, obj_ptrs: int = VIDEO_OBJ_PTRS,
                           dtype_bytes: int = 4, tokens_per_frame: int = 64 * 64) -> int:
    """Peak intermediate memory of memory attention for one object (1 head, unfused).

    ``tokens_per_frame``: keys one memory frame contributes (4096; EdgeTAM's perceiver: 512).
    """
    queries = 64 * 64
    keys = memory_frames * tokens_per_frame + 4 * obj_ptrs
    return int(LIVE * queries * keys * dtype_bytes)


def activation_bytes(variant: str, batch: int, video: bool = False) -> int:
    """Estimated activations for ``batch`` images (image API) or ``batch`` objects (video)."""
    act = encoder_activation_bytes(variant) * (1 if video else batch)
    if video:
        tokens = get_config(variant).memory_tokens_per_frame
        act = max(act, video_activation_bytes(tokens_per_frame=tokens) * batch)
    return act


def framework_need(backend: str, variant: str, batch: int, weights_bytes: int, video: bool = False) -> int:
    """ONNX Runtime / PyTorch (CPU or CUDA): weights + estimated activations + overhead."""
    return weights_bytes + activation_bytes(variant, batch, video) + registry.info(backend).overhead_mib * MiB


def tensorrt_need(device_memory_bytes: int | None, weights_bytes: int, io_bytes: int, variant: str,
                  batch: int, video: bool = False, unified: bool = False) -> tuple[int, str]:
    """Engine weights + context device memory (manifest) + IO buffers + overhead, and where it came from.

    ``unified`` (Jetson: the GPU allocates from the same RAM): the plan bytes are held in host memory
    while an engine deserializes, so the peak holds the weights twice. (Memory the CUDA allocator of an
    already loaded PyTorch keeps cached is allocated RAM there, so MemAvailable already excludes it.)
    """
    if device_memory_bytes is None:
        device_memory_bytes = activation_bytes(variant, batch, video) // 2
        source = "estimate (manifest has no device memory)"
    else:
        source = "engine manifest"
    plan_copy = weights_bytes if unified else 0
    if unified:
        source += ", + plan bytes while deserializing (unified memory)"
    need = weights_bytes + plan_copy + device_memory_bytes + io_bytes + registry.info("tensorrt").overhead_mib * MiB
    return need, source
