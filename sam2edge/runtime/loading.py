"""from_pretrained: turn a name, checkpoint path or export folder into a ready predictor.

:func:`resolve_source` works out *what* the user pointed at (:class:`ModelSource`): an export
folder (ONNX Runtime / TensorRT only), a checkpoint file (PyTorch, plus the export made from
exactly that file if the store has one), or a variant name. Backend choice is then delegated
to :mod:`sam2edge.runtime.fallback` (ordered candidates, free-memory admission, logged
fallback, strict mode). Whenever the source forces another backend than the one requested,
the change is explicit: logged with its reason and recorded on the source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sam2edge.backends import registry
from sam2edge.config import ModelConfig, get_config, resolve_name
from sam2edge.contract.artifacts import Artifact
from sam2edge.contract.manifest import onnx_dir, read_manifest, require
from sam2edge.contract.serving import is_triton_url
from sam2edge.download import MODELS_DIR_ENV, models_dir_checkpoint
from sam2edge.errors import BackendUnavailableError, EngineMismatchError, InputError, UnknownModelError
from sam2edge.integrity import sha256_file
from sam2edge.runtime.checks import check_kwargs, positive_int
from sam2edge.runtime.fallback import TorchLoader, open_backends

log = logging.getLogger(__name__)

__all__ = ["MODELS_DIR_ENV", "ModelSource", "load_predictor", "load_torch_model", "local_checkpoint", "resolve_source"]
PREDICTOR_KWARGS = frozenset({
    "sam2_image_embeddings_cache", "sam2_low_resolution_masks_cache", "preprocessing", "max_batch_size",
    "max_hole_area", "max_sprinkle_area", "allow_client_image_hashes",
})
LOAD_KWARGS = frozenset({"backend", "device", "strict", "store_dir", "video", "api_key", "engines_dir", "threads"})


@dataclass(frozen=True)
class ModelSource:
    """What ``from_pretrained`` was pointed at, resolved.

    kind: "export" (a folder with ONNX artifacts), "checkpoint" (a .pt file), "name" (a variant) or
    "triton" (``triton://host:port/prefix``: models served by a Triton server, see ``remote``).
    store_name: what the store is searched by (an export folder, or a variant name; the URL for "triton").
    backend / strict: what will be asked of the selection (may differ from the request; see reason).
    """

    kind: str
    config: ModelConfig
    store_name: str
    torch_loader: TorchLoader | None
    backend: str
    strict: bool
    checkpoint: Path | None = None
    checkpoint_sha256: str | None = None  # an export is used only if made from exactly this checkpoint
    reason: str = ""  # why backend/strict differ from what was requested ("" when they do not)
    remote: Any = None  # kind "triton": the RemoteModel the server describes (variant, checkpoint, constants)

    @property
    def model_id(self) -> str:
        """Variant and checkpoint: what embeddings made by this model are tagged with."""
        return f"{self.config.name}:{(self.checkpoint_sha256 or 'unknown')[:16]}"


def local_checkpoint(name_or_path: str) -> Path | None:
    """``$SAM2EDGE_MODELS_DIR/<official name>.pt`` for a variant name, if present.

    For air-gapped machines: checkpoints copied there by hand (official or fine-tuned) are
    used as they are, without the published-hash check; the variant is still detected from
    the file's keys and must be the one asked for. (``sam2edge.download.resolve_checkpoint``
    looks there first too, so export and build find the same file.)
    """
    return models_dir_checkpoint(name_or_path)


def load_torch_model(name_or_path: str, device: str = "cpu") -> tuple[Any, ModelConfig, Path]:
    """Checkpoint path or variant name -> (SAM2Model on device, ModelConfig, checkpoint path)."""
    from sam2edge.model import build_model  # torch: loaded only when PyTorch runs
    from sam2edge.model.checkpoint import load_checkpoint, resolve_checkpoint

    local = local_checkpoint(name_or_path)
    path = local or resolve_checkpoint(name_or_path)
    state, cfg = load_checkpoint(path)
    if local is not None and cfg.name != resolve_name(name_or_path):
        raise InputError(f"{local} holds a {cfg.name} checkpoint, but {name_or_path!r} was asked for")
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), cfg, Path(path)


def torch_loader(name_or_path: str) -> TorchLoader:
    """device -> the PyTorch model of ``name_or_path`` on that device (loaded when called)."""

    def load(device: str) -> Any:
        return load_torch_model(name_or_path, device)[0]

    return load


def resolve_source(target: str, backend: str = "auto", strict: bool = False, store_dir: str | None = None) -> ModelSource:
    """What ``target`` is, and with which backend request it can be opened (see :class:`ModelSource`)."""
    registry.check_choice(backend)
    if is_triton_url(target):
        return _triton_source(target, backend)
    if backend == registry.TRITON:
        raise InputError(f"backend={backend!r} runs models served by Triton: load triton://host:port/<model prefix>, "
                         f"not {target!r}")
    path = Path(target)
    if path.is_dir():
        folder = path / "onnx" if (path / "onnx").is_dir() else path
        manifest = read_manifest(folder)
        variant = require(manifest, "variant", str, folder)
        sha = manifest.get("checkpoint_sha256") if isinstance(manifest.get("checkpoint_sha256"), str) else None
        return ModelSource("export", get_config(variant), str(path), None, backend, strict, checkpoint_sha256=sha)
    if path.is_file():
        return _checkpoint_source(path, backend, strict, store_dir)
    try:
        name = resolve_name(target)
    except UnknownModelError as exc:
        raise InputError(
            f"model {target!r} is neither a file, an export folder, nor a known variant name ({exc})"
        ) from exc
    return ModelSource("name", get_config(name), name, torch_loader(name), backend, strict,
                       checkpoint_sha256=named_checkpoint_sha256(name))


def _triton_source(url: str, backend: str) -> ModelSource:
    """Models served by Triton: the triton backend only, strict (nothing local to fall back to, and a local
    model is never a stand-in for the served one). The variant and checkpoint come from the served configs."""
    from sam2edge.backends.triton_runner import describe_remote

    if backend not in (registry.AUTO, registry.TRITON):
        raise InputError(f"backend={backend!r} cannot run {url}: its models are served by Triton; "
                         f"use backend={registry.TRITON!r} (or 'auto')")
    remote = describe_remote(url)
    return ModelSource("triton", get_config(remote.variant), url, None, registry.TRITON, True,
                       checkpoint_sha256=remote.checkpoint_sha256, remote=remote)


def named_checkpoint_sha256(name: str) -> str | None:
    """The checkpoint a variant name stands for: a file in ``$SAM2EDGE_MODELS_DIR`` (hashed; it may be
    fine-tuned) or else the official file, whose published sha256 is in the registry (None where none is
    published: EdgeTAM). Only an export made from exactly that checkpoint serves the name, never whatever
    export of the variant is stored."""
    local = local_checkpoint(name)
    return sha256_file(local) if local is not None else (get_config(name).sha256 or None)


def _checkpoint_source(path: Path, backend: str, strict: bool, store_dir: str | None) -> ModelSource:
    """A checkpoint uses an export only if it was made from this very file (its full sha256)."""
    from sam2edge.model.checkpoint import load_checkpoint  # torch: a .pt file needs it anyway

    _, cfg = load_checkpoint(path)
    sha = sha256_file(path)
    export = onnx_dir(store_dir, cfg.name, sha)
    source = ModelSource("checkpoint", cfg, cfg.name, torch_loader(str(path)), backend, strict, checkpoint=path,
                         checkpoint_sha256=sha)
    usable, why = _export_made_from(export, sha)
    if usable:
        return replace(source, store_name=str(export.parent))
    if why:
        log.warning("sam2edge: not using %s: %s", export, why)
    if backend not in (registry.AUTO, registry.TORCH):
        raise BackendUnavailableError(
            f"backend={backend!r} needs an export of {path}: run `sam2edge export {path}` "
            f"(and `sam2edge build {path}` for TensorRT) first"
        )
    reason = f"no export of {path.name} in the store: PyTorch only (never another checkpoint's export)"
    return replace(source, backend=registry.TORCH, strict=True, reason=reason)


def _export_made_from(folder: Path, sha: str) -> tuple[bool, str]:
    """(usable, why not) for the store's export folder of a checkpoint; ("", False) when there is none."""
    if not folder.is_dir():
        return False, ""
    try:
        made_from = read_manifest(folder).get("checkpoint_sha256")
    except EngineMismatchError as exc:
        return False, f"damaged export ({exc})"
    if made_from != sha:
        return False, f"it was made from checkpoint {str(made_from)[:12]}..., not from this file ({sha[:12]}...)"
    return True, ""


def load_predictor(cls: type, model_name_or_path: str, backend: str = "auto", device: str | None = None,
                   strict: bool = False, store_dir: str | None = None, video: bool = False, threads: int | None = None,
                   **kwargs: Any) -> Any:
    """See SAM2.from_pretrained."""
    registry.check_choice(backend)
    if "engines_dir" in kwargs:  # the former name of store_dir
        store_dir = kwargs.pop("engines_dir") if store_dir is None else store_dir
    kwargs.pop("api_key", None)  # accepted for seed-API compatibility; everything runs offline
    predictor_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in PREDICTOR_KWARGS}
    check_kwargs(kwargs, PREDICTOR_KWARGS | LOAD_KWARGS, "from_pretrained")
    source = resolve_source(str(model_name_or_path), backend, strict, store_dir)
    if source.reason:
        log.warning("sam2edge: backend=%r asked, using backend=%r (strict=%s): %s",
                    backend, source.backend, source.strict, source.reason)
    backends = open_backends(
        source.store_name, backend=source.backend, device=device or "auto", strict=source.strict,
        store_root=store_dir, artifacts=Artifact.ALL if video else Artifact.IMAGE, torch_loader=source.torch_loader,
        variant=source.config.name, checkpoint_sha256=source.checkpoint_sha256 if source.kind != "export" else None,
        threads=None if threads is None else positive_int(threads, "threads"),
        remote_url=source.store_name if source.kind == "triton" else None,
        host_constants=source.remote.host_constants if source.remote is not None else None,
    )
    log.info("sam2edge: %s on %s", source.config.name, backends.active_backend)
    predictor = cls(backends.runners, source.config, backend=backends, model_id=source.model_id, **predictor_kwargs)
    return predictor
