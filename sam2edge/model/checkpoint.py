"""Loading official SAM2 / SAM2.1 / EdgeTAM checkpoints and telling which variant they hold.

A checkpoint is ``{"model": state_dict}`` saved by ``torch.save``. It is read with
``weights_only=True`` (no arbitrary pickles), the variant is guessed from a few keys and
shapes (Hiera: trunk width, number of trunk blocks, the SAM2.1-only memory keys; EdgeTAM:
its RepViT stem and spatial-perceiver keys), and the guess is
then checked against the full key set and every shape of our model for that variant, built
on the meta device. Anything else is refused with a CheckpointError that names the file,
what it holds and what was expected.

Downloading lives in :mod:`sam2edge.download` and is re-exported here. This module imports
PyTorch only inside the functions that need it.
"""

from __future__ import annotations

import functools
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sam2edge.config import REGISTRY, ModelConfig, get_config
from sam2edge.download import default_cache_dir, download_checkpoint, resolve_checkpoint
from sam2edge.errors import CheckpointError
from sam2edge.integrity import sha256_file
from sam2edge.model import build_model
from sam2edge.model.testing import randomize_model

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "StateDictDiff",
    "compare_state_dict",
    "default_cache_dir",
    "detect_variant",
    "download_checkpoint",
    "expected_state_dict_shapes",
    "load_checkpoint",
    "resolve_checkpoint",
    "sha256_file",
    "write_random_checkpoint",
]

PATCH_EMBED_KEY = "image_encoder.trunk.patch_embed.proj.weight"
# EdgeTAM: timm's RepViT stem under the official TimmBackbone ("body"), and the perceiver's latents.
EDGETAM_KEYS = ("image_encoder.trunk.body.stem.conv1.c.weight", "spatial_perceiver.latents")
SAM21_ONLY_KEYS = ("obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias", "no_obj_embed_spatial")
_BLOCK_KEY = re.compile(r"image_encoder\.trunk\.blocks\.(\d+)\.")


# --------------------------------------------------------------------------- expected tables
def _build(cfg: ModelConfig, device: str) -> torch.nn.Module:
    """Our network for ``cfg``, constructed on ``device`` ("meta": no memory, no init)."""
    import torch


    with torch.device(device):
        return build_model(cfg)


@functools.lru_cache(maxsize=16)
def _expected_items(cfg: ModelConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    try:
        model = _build(cfg, "meta")
    except (RuntimeError, NotImplementedError):  # a constructor that needs real values
        model = _build(cfg, "cpu")
    return tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())


def expected_state_dict_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of variant ``cfg`` with its shape, in the model's order."""
    return dict(_expected_items(cfg))


@dataclass(frozen=True)
class StateDictDiff:
    """How a state dict differs from an expected key -> shape table."""

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (key, found, expected)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    @property
    def score(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.mismatched)

    def describe(self, limit: int = 5) -> str:
        def some(items: list[str]) -> str:
            more = f", ... (+{len(items) - limit} more)" if len(items) > limit else ""
            return ", ".join(items[:limit]) + more

        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {some(list(self.missing))}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected key(s): {some(list(self.unexpected))}")
        if self.mismatched:
            shapes = [f"{k} is {tuple(f)} but should be {tuple(e)}" for k, f, e in self.mismatched]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {some(shapes)}")
        return "; ".join(parts) if parts else "no differences"


def compare_state_dict(state_dict: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]]) -> StateDictDiff:
    """Missing keys, unexpected keys and shape mismatches of ``state_dict`` vs ``expected``."""
    missing = tuple(k for k in expected if k not in state_dict)
    unexpected = tuple(k for k in state_dict if k not in expected)
    mismatched = tuple(
        (k, tuple(v.shape), expected[k]) for k, v in state_dict.items() if k in expected and tuple(v.shape) != expected[k]
    )
    return StateDictDiff(missing, unexpected, mismatched)


# --------------------------------------------------------------------------- detection
def _trunk_summary(state_dict: Mapping[str, Any]) -> tuple[str, ModelConfig | None]:
    """A description of the identifying keys, and the variant they point to (or None)."""
    if all(k in state_dict for k in EDGETAM_KEYS):
        for cfg in REGISTRY.values():
            if cfg.family == "edgetam":
                return "RepViT trunk and spatial perceiver (EdgeTAM)", cfg
    patch = state_dict.get(PATCH_EMBED_KEY)
    if patch is None or len(patch.shape) != 4:
        return f"no 4-D {PATCH_EMBED_KEY}", None
    width = int(patch.shape[0])
    blocks = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))}
    depth = max(blocks) + 1 if blocks else 0
    version = "sam2.1" if any(k in state_dict for k in SAM21_ONLY_KEYS) else "sam2"
    summary = f"trunk width {width}, {depth} trunk blocks, {version} memory keys"
    for cfg in REGISTRY.values():
        if cfg.family == "sam2" and (cfg.version, cfg.trunk.embed_dim, cfg.trunk.depth) == (version, width, depth):
            return summary, cfg
    return summary, None


def _check_entries(state_dict: Any) -> None:
    import torch

    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"the state dict is a {type(state_dict).__name__}, expected a dict of tensors")
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"state-dict entry {key!r} is a {type(value).__name__}, expected a str key with a torch.Tensor"
            )


def detect_variant(state_dict: Mapping[str, torch.Tensor]) -> ModelConfig:
    """The variant whose exact key set and shapes ``state_dict`` has.

    The guess uses the trunk's patch-embedding width, its number of blocks and the
    presence of the SAM2.1-only keys (or EdgeTAM's RepViT and perceiver keys); then every
    key and shape is verified. Raises
    CheckpointError naming the closest variant and its differences when nothing matches.
    """
    _check_entries(state_dict)
    summary, guess = _trunk_summary(state_dict)
    if guess is not None and compare_state_dict(state_dict, expected_state_dict_shapes(guess)).ok:
        return guess
    diffs = {name: compare_state_dict(state_dict, expected_state_dict_shapes(cfg)) for name, cfg in REGISTRY.items()}
    closest = min(diffs, key=lambda n: (diffs[n].score, n != getattr(guess, "name", None)))
    n_expected = len(expected_state_dict_shapes(REGISTRY[closest]))
    raise CheckpointError(
        f"the state dict ({len(state_dict)} tensors; {summary}) matches no SAM2 variant (nor EdgeTAM). Expected the exact keys "
        f"and shapes of one of {list(REGISTRY)}. Closest is {closest} ({n_expected} tensors): "
        f"{diffs[closest].describe()}"
    )


# --------------------------------------------------------------------------- loading
def _sniff(path: Path, unsafe: bool) -> str:
    """What a file that torch.load refused looks like, for the error message."""
    with open(path, "rb") as f:
        head = f.read(64)
    size = path.stat().st_size
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return f"it starts like a PyTorch zip checkpoint but its end is missing: truncated ({size} bytes)?"
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if not any(n.endswith("data.pkl") for n in names):
            return f"a zip archive that is not a PyTorch checkpoint (no data.pkl among its {len(names)} entries)"
        if unsafe:
            return "it holds Python objects that safe loading (weights_only=True) refuses; only tensors are allowed"
        return "a PyTorch zip checkpoint that could not be unpickled (corrupt?)"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the weights (run `git lfs pull`)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page (a failed download saved as the checkpoint?)"
    if head[:1] == b"\x80":
        return f"a pickle file that could not be read: truncated, or not only tensors ({size} bytes)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return f"unknown binary format (starts with bytes {head[:8].hex(' ')})"
    return f"it is a text file (starts with {text[:32]!r})"


def _reason(error: Exception) -> str:
    """The informative line of a torch.load error (its weights-only preamble is generic)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else ""


def _read(path: Path) -> Any:
    import torch

    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; expected an official SAM2/SAM2.1 .pt file")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; expected a .pt file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is an empty file (0 bytes); expected a .pt file (re-download it)")
    # Memory-mapped: tensors are read from the page cache as they are copied into the model, so loading
    # never holds a second full copy of the weights (large: 900 MB) in anonymous memory. The legacy
    # (pre-zip) serialisation cannot be mapped and is read whole.
    mmap = zipfile.is_zipfile(path)
    if mmap:
        check_zip_crcs(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # torch raises many types here (UnpicklingError, RuntimeError, EOFError...)
        what = _sniff(path, unsafe="Unsupported global" in str(e))
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch checkpoint: {what} [{type(e).__name__}: {_reason(e)}]"
        ) from e


def check_zip_crcs(path: Path) -> None:
    """Every member of a zip checkpoint against its CRC-32 (torch.load does not check them).

    A flipped byte inside the weights would otherwise load as a silently different model. Reads the
    whole file once (zlib's CRC runs at several GB/s; the page cache then serves the memory-mapped load).
    The legacy pre-zip format carries no checksum and cannot be checked this way.
    """
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"checkpoint {path} is a damaged zip archive ({exc}); re-download or re-save it") from exc
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: the CRC of its entry {bad!r} does not match its contents "
            "(a damaged download or disk); re-download it"
        )


def _model_entry(obj: Any, path: Path) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(obj).__name__}; expected a dict with a 'model' state dict"
        )
    if "model" not in obj:
        keys = [str(k) for k in list(obj)[:6]]
        hint = ""
        if PATCH_EMBED_KEY in obj:
            hint = "; it looks like a bare state dict: save it as {'model': state_dict}"
        elif "state_dict" in obj:
            hint = "; it has a 'state_dict' entry: save that as {'model': state_dict}"
        raise CheckpointError(
            f"checkpoint {path} has no 'model' entry (top-level keys: {keys}); expected the official format "
            f"{{'model': state_dict}}{hint}"
        )
    return obj["model"]


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The state dict (CPU tensors) of an official-format checkpoint and its detected variant.

    Raises CheckpointError for a missing, empty, unreadable or truncated file, a file
    without a 'model' entry, or a state dict that matches no variant exactly.
    """
    path = Path(path).expanduser()
    state_dict = _model_entry(_read(path), path)
    try:
        cfg = detect_variant(state_dict)
    except CheckpointError as e:
        raise CheckpointError(f"checkpoint {path}: {e}") from None
    return dict(state_dict), cfg


def write_random_checkpoint(path: str | os.PathLike, name_or_cfg: str | ModelConfig, seed: int = 0) -> Path:
    """Write a checkpoint in the official format with every tensor random (tests, benchmarks).

    BatchNorm statistics (EdgeTAM) are calibrated on a seeded noise image instead
    (:func:`sam2edge.model.testing.randomize_model`), so activations keep a trained network's scale.

    The file is written next to ``path`` and moved into place, so readers never see half
    a file. Returns ``path``.
    """
    import torch


    cfg = name_or_cfg if isinstance(name_or_cfg, ModelConfig) else get_config(name_or_cfg)
    model = randomize_model(_build(cfg, "cpu"), seed)
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({"model": model.state_dict()}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
