"""from_pretrained: turn a name, checkpoint path or engines folder into a ready predictor.

Backend choice is delegated to :mod:`sam2edge.engines.backends` (ordered candidates,
free-memory admission, logged fallback, strict mode). This module only works out *what*
the user pointed at and which exported set, if any, was made from exactly that checkpoint.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from sam2edge.errors import BackendUnavailableError, InputError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
IMAGE_ARTIFACTS = ("image_encoder", "prompt_decoder")
ALL_ARTIFACTS = ("image_encoder", "prompt_decoder", "memory_attention", "memory_encoder")
_PREDICTOR_KWARGS = {
    "sam2_image_embeddings_cache", "sam2_low_resolution_masks_cache", "preprocessing", "max_batch_size",
    "max_hole_area", "max_sprinkle_area",
}


def local_checkpoint(name_or_path: str) -> Path | None:
    """``$SAM2EDGE_MODELS_DIR/<official name>.pt`` for a variant name, if present.

    For air-gapped machines: checkpoints copied there by hand (official or fine-tuned) are
    used as they are, without the published-hash check; the variant is still detected from
    the file's keys and must be the one asked for.
    """
    from sam2edge.config import resolve_name

    folder = os.environ.get("SAM2EDGE_MODELS_DIR")
    if not folder:
        return None
    try:
        name = resolve_name(name_or_path)
    except Exception:
        return None
    candidate = Path(folder) / f"{name}.pt"
    return candidate if candidate.is_file() else None


def load_torch_model(name_or_path: str, device: str = "cpu"):
    """Checkpoint path or variant name -> (SAM2Model on device, ModelConfig, checkpoint path)."""
    from sam2edge.checkpoint import load_checkpoint, resolve_checkpoint
    from sam2edge.config import resolve_name
    from sam2edge.model import build_model

    local = local_checkpoint(name_or_path)
    path = local or resolve_checkpoint(name_or_path)
    state, cfg = load_checkpoint(path)
    if local is not None and cfg.name != resolve_name(name_or_path):
        raise InputError(f"{local} holds a {cfg.name} checkpoint, but {name_or_path!r} was asked for")
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg, Path(path)


def load_predictor(cls: type, model_name_or_path: str, backend: str = "auto", device: str | None = None,
                   strict: bool = False, engines_dir: str | None = None, video: bool = False, **kwargs: Any):
    """See SAM2.from_pretrained."""
    from sam2edge.engines.backends import open_backends

    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
    kwargs.pop("api_key", None)  # accepted for seed-API compatibility; everything runs offline
    predictor_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _PREDICTOR_KWARGS}
    if kwargs:
        log.debug("from_pretrained ignores %s", sorted(kwargs))
    name, cfg, loader, backend, strict = _resolve_source(str(model_name_or_path), backend, strict, engines_dir)
    backends = open_backends(
        name, backend=backend, device=device or "auto", strict=strict, store_root=engines_dir,
        artifacts=ALL_ARTIFACTS if video else IMAGE_ARTIFACTS, torch_loader=loader,
    )
    log.info("sam2edge: %s on %s", cfg.name, backends.active_backend)
    predictor = cls(backends.runners, cfg, backend=backends, **predictor_kwargs)
    predictor.host_constants = _export_host_constants(name)  # mask prompts on video frames (ONNX Runtime, TensorRT)
    return predictor


def _export_host_constants(name: str) -> dict[str, Any] | None:
    """The ``host_constants`` of the export manifest when the model comes from an exported folder."""
    path = Path(name)
    if not path.is_dir():
        return None
    from sam2edge.export.manifest import read_manifest

    return read_manifest(path / "onnx" if (path / "onnx").is_dir() else path).get("host_constants")


def _resolve_source(target: str, backend: str, strict: bool, engines_dir: str | None):
    """-> (name for the store, ModelConfig, torch loader or None, backend, strict)."""
    from sam2edge.config import get_config, resolve_name
    from sam2edge.engines.store import EngineStore

    path = Path(target)
    if path.is_dir():  # an exported folder: ONNX Runtime / TensorRT only
        from sam2edge.export.manifest import read_manifest

        onnx_dir = path / "onnx" if (path / "onnx").is_dir() else path
        return str(path), get_config(read_manifest(onnx_dir)["variant"]), None, backend, strict
    if path.is_file():  # a checkpoint: use an export only if it was made from this very file
        from sam2edge.checkpoint import load_checkpoint
        from sam2edge.download import sha256_file

        _, cfg = load_checkpoint(path)
        folder = EngineStore(engines_dir).root / f"{cfg.name}-{sha256_file(path)[:8]}"
        loader = _loader(str(path))
        if (folder / "onnx").is_dir():
            return str(folder), cfg, loader, backend, strict
        if backend in ("onnxruntime", "tensorrt"):
            raise BackendUnavailableError(
                f"backend={backend!r} needs an export of {path}: run `sam2edge export {path}` "
                f"(and `sam2edge build {path}` for TensorRT) first"
            )
        # No export of this checkpoint: PyTorch only (never another checkpoint's export).
        return cfg.name, cfg, loader, "torch", True
    try:
        name = resolve_name(target)
    except Exception as exc:
        raise InputError(
            f"model {target!r} is neither a file, an exported folder, nor a known variant name ({exc})"
        ) from exc
    return name, get_config(name), _loader(name), backend, strict


def _loader(name_or_path: str):
    def load(device: str):
        return load_torch_model(name_or_path, device)[0]

    return load
