"""Image decoding for requests, with every limit checked before the pixels are decoded.

``decode_request_image`` turns Roboflow's ``{type, value}`` into an RGB uint8 array:

* ``base64``: an encoded image file (PNG, JPEG, WebP, BMP, TIFF, GIF). Its width and height are
  read from the header (Pillow opens lazily) and checked against the pixel limit first, so a
  small file that would inflate to gigabytes (a decompression bomb) is refused with a 413
  before any decoding. Formats Pillow cannot identify are refused: their size cannot be
  checked first. The pixels are then decoded by OpenCV (EXIF orientation applied, as Roboflow).
* ``numpy``: the base64 of ``.npy`` bytes; dtype and shape are read from the ``.npy`` header
  (a literal, parsed without executing anything) and the array is loaded with
  ``allow_pickle=False``. Never unpickled. Channel order BGR, as Roboflow's numpy images.
* ``url``: only when the server allows it; http(s) only, size-capped and time-limited.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import Any

import numpy as np

from sam2edge.server.problems import bad_request, too_large

_DATA_URL = re.compile(r"^data:[^,]*;base64,")
NPY_MAGIC = b"\x93NUMPY"
DISABLED_TYPES = ("file", "pil", "multipart", "numpy_object")


def decode_request_image(image: Any, max_pixels: int, max_bytes: int, allow_url: bool = False,
                         url_timeout_s: float = 10.0) -> np.ndarray:
    """``{type, value}`` -> [H,W,3] RGB uint8, or a Problem (400 bad input, 413 too large)."""
    kind = str(getattr(image, "type", "") or "").lower()
    value = getattr(image, "value", None)
    if kind == "base64":
        return decode_image_bytes(b64_bytes(value, "image.value"), max_pixels)
    if kind == "numpy":
        return decode_npy(b64_bytes(value, "image.value"), max_pixels)
    if kind == "url":
        if not allow_url:
            raise bad_request("image type 'url' is disabled on this server: send the image as base64 "
                              "(or start the server with --allow-url-images)")
        return decode_image_bytes(fetch_url(value, max_bytes, url_timeout_s), max_pixels)
    if kind in DISABLED_TYPES:
        raise bad_request(f"image type {kind!r} is not accepted over HTTP; use 'base64' or 'numpy' (.npy bytes)")
    raise bad_request(f"image.type must be 'base64', 'numpy' or 'url', got {kind!r}")


def b64_bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} must be a non-empty base64 string, got {type(value).__name__}")
    text = _DATA_URL.sub("", value.strip(), count=1)
    try:
        data = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f"{name} is not valid base64 ({exc})") from None
    if not data:
        raise bad_request(f"{name} decodes to zero bytes")
    return data


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header of an encoded image; 400 if it is not a known image format."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return int(img.size[0]), int(img.size[1])
    except Image.DecompressionBombError as exc:
        raise too_large(f"image is too large to decode ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise bad_request(f"image bytes are not a PNG, JPEG, WebP, BMP, TIFF or GIF image ({exc})") from None


def check_pixels(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    if width < 1 or height < 1:
        raise bad_request(f"{what} has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise too_large(f"{what} is {width}x{height} = {width * height} pixels; this server accepts at most {max_pixels}")


def decode_image_bytes(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image file -> [H,W,3] RGB uint8, its size checked from the header first."""
    import cv2

    width, height = image_size(data)
    check_pixels(width, height, max_pixels)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:  # e.g. a GIF on an OpenCV without GIF support: Pillow decodes it
        bgr = _decode_with_pillow(data)
    check_pixels(int(bgr.shape[1]), int(bgr.shape[0]), max_pixels)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _decode_with_pillow(data: bytes) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as img:
            rgb = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except Exception as exc:  # truncated or corrupt files raise many types
        raise bad_request(f"image bytes could not be decoded ({exc})") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def decode_npy(data: bytes, max_pixels: int) -> np.ndarray:
    """``.npy`` bytes of an HxW / HxWx1 / HxWx3 uint8 BGR array -> [H,W,3] RGB uint8 (never unpickled)."""
    if not data.startswith(NPY_MAGIC):
        hint = " (this looks like a pickle: pickled arrays are refused, they can run code)" if data[:1] == b"\x80" else ""
        raise bad_request("image type 'numpy' must be the base64 of .npy bytes written by numpy.save" + hint)
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    except ValueError as exc:
        raise bad_request(f"image .npy header is invalid ({exc})") from None
    if dtype != np.uint8:
        raise bad_request(f"image .npy array must be uint8, got {dtype}")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3)):
        raise bad_request(f"image .npy array must be HxW, HxWx1 or HxWx3, got shape {tuple(shape)}")
    check_pixels(int(shape[1]), int(shape[0]), max_pixels)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise bad_request(f"image .npy data could not be read ({exc})") from None
    if arr.ndim == 2 or arr.shape[2] == 1:
        arr = np.repeat(arr.reshape(arr.shape[0], arr.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(arr[:, :, ::-1])


def fetch_url(url: Any, max_bytes: int, timeout_s: float) -> bytes:
    """GET an http(s) URL, at most ``max_bytes`` bytes (413 beyond), within ``timeout_s``."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlparse

    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
        raise bad_request(f"image.value must be an http(s) URL, got {str(url)[:100]!r}")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - scheme checked above
            data = resp.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise bad_request(f"image URL could not be fetched ({exc})") from None
    if len(data) > max_bytes:
        raise too_large(f"image at the URL is larger than {max_bytes} bytes")
    return data
