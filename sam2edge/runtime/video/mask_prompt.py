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
from sam2edge.processing import resize, validate

HOST_CONSTANTS = ("mask_downsample.weight", "mask_downsample.bias", "no_obj_ptr")
MASK_LOGIT_SCALE, MASK_LOGIT_BIAS = 20.0, -10.0


def resize_plane(plane: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """[H,W] float32 -> [h,w] with torch's ``interpolate(bilinear, antialias=True)`` filter."""
    plane = np.ascontiguousarray(plane, np.float32)
    return np.ascontiguousarray(resize.resize_antialias(plane, int(out_hw[0]), int(out_hw[1])), np.float32)


def mask_to_input_size(mask: Any, size: int) -> np.ndarray:
    """A 2-D mask (bool / 0-1) -> [size,size] float32 0/1, as the official add_new_mask.

    NaN/inf, values outside [0, 1] (a 0/255 image) and non-numeric masks are refused."""
    arr = validate.as_numbers(mask, "mask", "a 2-D [H,W] mask of bool or 0/1 values", allow_bool=True)
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(f"mask must be a 2-D [H,W] array, got shape {arr.shape}")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:
        raise InputError(f"mask must hold bool or 0/1 values (in [0, 1]); got values in [{lo:g}, {hi:g}] "
                         "(for a 0/255 image pass mask > 127)")
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
    """The three host constants of a predictor, wherever its loader left them: ``model.host_constants``
    (either spelling), the export manifest of the backend set its runners come from (an export folder
    or a store export), or the PyTorch module of its decoder runner; None if none of these has them."""
    found = _named(getattr(model, "host_constants", None))
    runner = getattr(model, "runners", {}).get(Artifact.PROMPT_DECODER)
    owner = getattr(runner, "owner", None)  # a fallback proxy: its backend set knows the export
    if found is None and owner is not None and hasattr(owner, "manifest_host_constants"):
        found = _named(owner.manifest_host_constants())
    if found is not None:
        return found
    net = torch_model_of(runner)
    if net is None or not hasattr(net, "mask_downsample"):
        return None
    return {
        "mask_downsample.weight": net.mask_downsample.weight.detach().cpu().float().numpy(),
        "mask_downsample.bias": net.mask_downsample.bias.detach().cpu().float().numpy(),
        "no_obj_ptr": net.no_obj_ptr.detach().cpu().float().numpy().reshape(-1),
    }


def torch_model_of(runner: Any) -> Any:
    """The SAM2 PyTorch model behind a runner (through a fallback proxy's active runner), or None."""
    runner = getattr(runner, "active_runner", None) or runner
    return getattr(getattr(runner, "module", None), "model", None)


def _named(consts: Any) -> dict[str, np.ndarray] | None:
    if isinstance(consts, Mapping):
        for names in (HOST_CONSTANTS, tuple(_MANIFEST_KEYS[k] for k in HOST_CONSTANTS)):
            if all(k in consts for k in names):
                return {k: np.asarray(consts[n], np.float32) for k, n in zip(HOST_CONSTANTS, names)}
    return None


def require_host_constants(consts: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    if consts is None:
        raise BackendUnavailableError(
            "add_mask needs the model's host constants "
            f"{list(HOST_CONSTANTS)}; neither the model's export manifest nor a PyTorch model provides them "
            "(re-export it with `sam2edge export`, which records them, or load the checkpoint)"
        )
    return consts
