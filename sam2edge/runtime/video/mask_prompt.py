"""Mask prompts on the host: what the official ``add_new_mask`` / ``_use_mask_as_output`` compute
outside the networks, in numpy.

* the mask is stretched to 1024 x 1024 with antialiased bilinear resampling and thresholded at
  0.5 (when it is not 1024 x 1024 already);
* its output logits are ``mask*20 - 10`` resampled (antialiased bilinear) to 256 x 256;
* the decoder's mask input is ``mask_downsample(mask)``, a 4x4 / stride-4 convolution whose
  16 weights and bias are host constants of the model (``mask_downsample.weight`` / ``.bias``);
* the object is present iff any mask pixel is set (score +10 / -10); an absent object's
  pointer is ``no_obj_ptr`` (the third host constant).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sam2edge.contract.artifacts import Artifact
from sam2edge.errors import BackendUnavailableError, InputError
from sam2edge.processing import resize

HOST_CONSTANTS = ("mask_downsample.weight", "mask_downsample.bias", "no_obj_ptr")
MASK_LOGIT_SCALE, MASK_LOGIT_BIAS = 20.0, -10.0


def resize_plane(plane: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """[H,W] float32 -> [h,w] with torch's ``interpolate(bilinear, antialias=True)`` filter."""
    plane = np.ascontiguousarray(plane, np.float32)
    return np.ascontiguousarray(resize.resize_antialias(plane, int(out_hw[0]), int(out_hw[1])), np.float32)


def mask_to_input_size(mask: Any, size: int) -> np.ndarray:
    """A 2-D mask (bool / 0-1) -> [size,size] float32 0/1, as the official add_new_mask."""
    arr = np.asarray(mask)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"mask must be a 2-D [H,W] array, got shape {arr.shape}")
    m = arr.astype(np.float32)
    if m.shape != (size, size):
        m = (resize_plane(m, (size, size)) >= 0.5).astype(np.float32)
    return m


def mask_output_logits(mask_full: np.ndarray, low_res: int) -> np.ndarray:
    """[S,S] 0/1 -> [low_res,low_res] logits (mask*20-10, antialiased downsample)."""
    return resize_plane(mask_full * MASK_LOGIT_SCALE + MASK_LOGIT_BIAS, (low_res, low_res))


def mask_downsample(mask_full: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """[S,S] -> [1,1,S/4,S/4]: the model's 4x4 stride-4 convolution (1 -> 1 channel)."""
    s = mask_full.shape[0]
    k = weight.reshape(4, 4).astype(np.float32)
    blocks = mask_full.reshape(s // 4, 4, s // 4, 4)
    out = np.einsum("iajc,ac->ij", blocks, k) + np.float32(np.asarray(bias).reshape(-1)[0])
    return out.astype(np.float32)[None, None]


# The export manifest's spelling of the same constants ("host_constants" in manifest.json).
_MANIFEST_KEYS = {"mask_downsample.weight": "mask_downsample_weight", "mask_downsample.bias": "mask_downsample_bias",
                  "no_obj_ptr": "no_obj_ptr"}


def host_constants_of(model: Any) -> dict[str, np.ndarray] | None:
    """The three host constants of a predictor: ``model.host_constants`` when the loader set it
    (the ``host_constants`` of an export manifest, either spelling), else read from a PyTorch
    runner's module; None if unavailable."""
    consts = getattr(model, "host_constants", None)
    if isinstance(consts, Mapping):
        for names in (HOST_CONSTANTS, tuple(_MANIFEST_KEYS[k] for k in HOST_CONSTANTS)):
            if all(k in consts for k in names):
                return {k: np.asarray(consts[n], np.float32) for k, n in zip(HOST_CONSTANTS, names)}
    runner = getattr(model, "runners", {}).get(Artifact.PROMPT_DECODER)
    net = getattr(getattr(runner, "module", None), "model", None)
    if net is None or not hasattr(net, "mask_downsample"):
        return None
    return {
        "mask_downsample.weight": net.mask_downsample.weight.detach().cpu().float().numpy(),
        "mask_downsample.bias": net.mask_downsample.bias.detach().cpu().float().numpy(),
        "no_obj_ptr": net.no_obj_ptr.detach().cpu().float().numpy().reshape(-1),
    }


def require_host_constants(consts: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    if consts is None:
        raise BackendUnavailableError(
            "add_mask needs the model's host constants "
            f"{list(HOST_CONSTANTS)}; this backend's loader did not provide them (re-export the model, "
            "or use the PyTorch backend)"
        )
    return consts
