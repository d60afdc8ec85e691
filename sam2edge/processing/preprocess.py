"""Image input checks, SAM2 pre-processing and image hashing: numpy, OpenCV and (optionally) Pillow.

The official package pre-processes still images and video frames differently, and sam2edge
names the choice the same way for both, ``preprocessing="auto" | "exact" | "opencv"``:

* **image** (``SAM2ImagePredictor``): stretch to 1024x1024 (no letterbox) with bilinear,
  antialiased resampling of the /255 float image (torch ``F.interpolate(mode="bilinear",
  antialias=True)``), then the ImageNet mean/std. ``"exact"`` runs those torch operations
  (bit-exact on CPU; :func:`sam2edge.model.preprocess.preprocess_torch`, needs torch);
  ``"opencv"`` is :func:`preprocess_opencv` here, torch's filter reproduced with numpy + OpenCV
  (``sam2edge.processing.resize``), equal to float rounding (~1e-6 after normalisation).
* **video** (``SAM2VideoPredictor``'s frame loader): PIL ``resize((1024, 1024))`` (bicubic) of
  the uint8 frame, /255 in float64, float32 normalisation. ``"exact"`` is :func:`preprocess_pil`
  (bit-exact, needs Pillow); ``"opencv"`` uses the image pipeline above (numpy + OpenCV only).
* ``"auto"``: ``"exact"`` where its library (torch for images, Pillow for video) is installed.

``"pil"`` and ``"numpy"`` (the video API's former names) are accepted for ``"exact"`` and
``"opencv"``. The runtime picks the function per kind (:mod:`sam2edge.runtime.preprocessing`).
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

import cv2
import numpy as np

from sam2edge.errors import InputError
from sam2edge.processing.resize import resize_antialias

INPUT_SIZE = 1024
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MEAN32 = np.array(IMAGENET_MEAN, dtype=np.float32)
_STD32 = np.array(IMAGENET_STD, dtype=np.float32)
_COLOR_FORMATS = ("bgr", "rgb")
# Per-pixel steps that depend on the uint8 value (and channel) alone, as 256-entry tables that
# cv2.LUT applies in one pass: the same bits as computing them, in a fraction of the time.
# /255 in float32 (the image pipeline, before its resize):
_UNIT_TABLE = (np.arange(256, dtype=np.float32) / np.float32(255.0)).reshape(256, 1)
# The video loader's chain after its resize: /255 in float64, to float32, minus the mean and over
# the std in float32 (one table per channel):
_VIDEO_TABLES = tuple(np.ascontiguousarray(t).reshape(256, 1)
                      for t in (((np.arange(256) / 255.0).astype(np.float32)[:, None] - _MEAN32) / _STD32).T)
for _table in (_UNIT_TABLE, *_VIDEO_TABLES):
    _table.flags.writeable = False
del _table


# -- input checks ----------------------------------------------------------------------
def to_rgb_uint8(image: Any, input_color_format: str | None = None, name: str = "image") -> np.ndarray:
    """One image -> contiguous HWC RGB uint8 numpy array, or a typed InputError naming ``name``.

    Accepts numpy HWC uint8 (BGR by default, as ``cv2.imread`` gives), a PIL RGB image, or a
    torch tensor CHW / 1xCHW (RGB by default) that is uint8 or float in [0, 1] (floats are
    rounded to the nearest uint8). ``input_color_format`` ("bgr" | "rgb") overrides the default
    of the input kind. Grayscale, RGBA, other dtypes, empty images and NaN/inf are refused.
    """
    fmt = _color_format(input_color_format)
    if _is_torch(image):
        return _flip(_torch_to_hwc_uint8(image, name), fmt or "rgb")
    if hasattr(image, "mode") and hasattr(image, "convert") and not isinstance(image, np.ndarray):
        if image.mode != "RGB":
            raise InputError(f"{name} is a PIL image in mode {image.mode!r}; expected 'RGB' (use image.convert('RGB'))")
        return _flip(check_hwc_uint8(np.asarray(image), name), fmt or "rgb")
    if not isinstance(image, np.ndarray):
        raise InputError(
            f"{name} must be a numpy array (HWC uint8) or a torch tensor (CHW), got {type(image).__name__}"
        )
    return _flip(check_hwc_uint8(image, name), fmt or "bgr")


def to_rgb_uint8_list(images: Any, input_color_format: str | None = None, name: str = "images") -> list[np.ndarray]:
    """A list/tuple of images, an NHWC numpy batch or an NCHW torch batch -> list of RGB uint8."""
    if isinstance(images, list | tuple):
        if not images:
            raise InputError(f"{name} is empty; expected at least one image")
        items = list(images)
    elif getattr(images, "ndim", 0) == 4:
        items = list(images)
    else:
        return [to_rgb_uint8(images, input_color_format, name)]
    return [to_rgb_uint8(img, input_color_format, f"{name}[{i}]") for i, img in enumerate(items)]


def _color_format(value: str | None) -> str | None:
    if value is None:
        return None
    fmt = str(value).lower()
    if fmt not in _COLOR_FORMATS:
        raise InputError(f"input_color_format must be 'bgr' or 'rgb', got {value!r}")
    return fmt


def _is_torch(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _flip(hwc: np.ndarray, fmt: str) -> np.ndarray:
    return np.ascontiguousarray(hwc[..., ::-1] if fmt == "bgr" else hwc)


def _channel_error(name: str, channels: int, layout: str) -> InputError:
    if channels == 1:
        return InputError(
            f"{name} is grayscale ({layout}, 1 channel); convert it first, e.g. cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)"
        )
    if channels == 4:
        return InputError(
            f"{name} has 4 channels (RGBA/BGRA); drop alpha first, e.g. cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)"
        )
    return InputError(f"{name} must have 3 color channels ({layout}), got {channels}")


def check_hwc_uint8(image: np.ndarray, name: str) -> np.ndarray:
    shape = tuple(image.shape)
    if image.ndim == 2:
        raise _channel_error(name, 1, "HxW")
    if image.ndim != 3:
        raise InputError(f"{name} must be an HxWx3 image (one image; pass a list for several), got shape {shape}")
    if 0 in shape:
        raise InputError(f"{name} is empty (shape {shape})")
    if image.shape[2] != 3:
        if image.shape[0] in (1, 3, 4) and image.shape[2] > 4:
            raise InputError(
                f"{name} looks channel-first (shape {shape}); numpy images are HWC: use image.transpose(1, 2, 0)"
            )
        raise _channel_error(name, image.shape[2], "HWC")
    if image.dtype != np.uint8:
        hint = " (for floats in [0, 1] use (image * 255).round().astype(np.uint8))" if image.dtype.kind == "f" else ""
        raise InputError(f"{name} must be uint8, got dtype {image.dtype}{hint}")
    return image


def _torch_to_hwc_uint8(t: Any, name: str) -> np.ndarray:
    """A torch tensor (already imported by the caller) -> HWC uint8, through tensor methods only."""
    shape = tuple(t.shape)
    if t.ndim == 4:
        if shape[0] != 1:
            raise InputError(
                f"{name} is a batch of {shape[0]} images (NCHW {shape}); pass one image or use to_rgb_uint8_list"
            )
        t = t[0]
    if t.ndim != 3:
        raise InputError(f"{name} must be a CHW (or 1xCHW) tensor, got shape {shape}")
    if 0 in tuple(t.shape):
        raise InputError(f"{name} is empty (shape {shape})")
    if t.shape[0] != 3:
        raise _channel_error(name, int(t.shape[0]), "CHW")
    if str(t.dtype) == "torch.uint8":
        return np.ascontiguousarray(t.detach().cpu().numpy().transpose(1, 2, 0))
    if not t.is_floating_point():
        raise InputError(f"{name} must be a uint8 tensor or a float tensor in [0, 1], got dtype {t.dtype}")
    arr = t.detach().float().cpu().numpy()
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or inf values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise InputError(
            f"float {name} must hold values in [0, 1], got [{lo:.4g}, {hi:.4g}] (divide by 255, or pass uint8)"
        )
    return np.ascontiguousarray((arr * np.float32(255.0)).round().astype(np.uint8).transpose(1, 2, 0))


# -- pre-processing --------------------------------------------------------------------
MODES = ("auto", "exact", "opencv")
_ALIASES = {"pil": "exact", "numpy": "opencv"}  # the video API's former names


def parse_mode(mode: Any, name: str = "preprocessing") -> str:
    """``"auto" | "exact" | "opencv"`` (or a former alias), else InputError naming ``name``."""
    value = _ALIASES.get(mode, mode) if isinstance(mode, str) else mode
    if value not in MODES:
        raise InputError(f"{name} must be one of {MODES}, got {mode!r}")
    return value


def preprocess_opencv(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """HWC RGB uint8 -> [1,3,size,size] float32 (ImageNet-normalised), numpy + OpenCV only.

    The image predictor's pipeline (antialiased bilinear stretch of the /255 image)."""
    rgb = np.ascontiguousarray(check_hwc_uint8(np.asarray(rgb), "rgb"))
    x = resize_antialias(cv2.LUT(rgb, _UNIT_TABLE), size, size)
    out = np.empty((1, 3, size, size), dtype=np.float32)
    # Each channel is read in place (a strided view) into its output plane. cv2.split's three
    # planes cost more than the normalisation itself: the whole video stream loop with cheap
    # runners took 29.7 ms per frame with them and 19.1 ms without (same values, bit for bit).
    for c in range(3):
        np.subtract(x[..., c], _MEAN32[c], out=out[0, c])
        np.divide(out[0, c], _STD32[c], out=out[0, c])
    return out


def preprocess_pil(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """HWC RGB uint8 -> [1,3,size,size] float32: the official video frame loader, bit-exact.

    PIL bicubic resize of the uint8 frame, /255 in float64, then float32 normalisation. Needs Pillow.
    """
    try:
        from PIL import Image
    except ImportError as exc:
        raise InputError("preprocessing='exact' for video frames needs Pillow (pip install pillow); "
                         "or use preprocessing='opencv'") from exc
    rgb = check_hwc_uint8(np.asarray(rgb), "rgb")
    resized = np.ascontiguousarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))
    # The per-pixel chain as one table lookup per channel plane (bit-identical), written straight
    # into the output planes: a 1080p frame took 66 ms to pre-process computing it with numpy,
    # 38 ms with the table (the resize is the rest).
    out = np.empty((1, 3, size, size), dtype=np.float32)
    for c, plane in enumerate(cv2.split(resized)):
        res = cv2.LUT(plane, _VIDEO_TABLES[c], dst=out[0, c])
        if not np.shares_memory(res, out):  # OpenCV chose its own buffer
            out[0, c] = res
    return out


# -- hashing ---------------------------------------------------------------------------
def image_hash(array: Any) -> str:
    """Content hash of an image: its bytes, shape and dtype (SHA-256, hex).

    Same pixels in the same layout give the same hash; a BGR and an RGB copy of one picture
    differ (hash what you cache by, e.g. the RGB uint8 image). Torch tensors are hashed from
    their CPU bytes. About 4-8 ms for a 1920x1080x3 uint8 image on a CPU with SHA extensions.
    """
    if _is_torch(array):
        array = array.detach().cpu().contiguous().numpy()
    arr = np.ascontiguousarray(np.asarray(array))
    digest = hashlib.sha256(f"{arr.shape}|{arr.dtype.str}|".encode())
    digest.update(arr.reshape(-1).view(np.uint8))
    return digest.hexdigest()
