"""The artifact and engine store on disk.

Layout (shared with the ONNX export, see :mod:`sam2edge.contract.manifest`)::

    <root>/<variant>-<ckpt_sha256[:8]>/onnx/{manifest.json, <artifact>.onnx}
    <root>/<variant>-<ckpt_sha256[:8]>/tensorrt/<precision>/<device-slug>/
        {manifest.json, <artifact>.engine, timing.cache}

``<root>`` is ``$SAM2EDGE_ENGINES`` or ``engines/``. The device slug comes from the
:class:`~sam2edge.engines.fingerprint.EngineFingerprint` (GPU, compute capability, TensorRT,
CUDA, L4T).

An engine set is refused (``EngineMismatchError`` with the exact rebuild command) when its
fingerprint differs from this machine's, when it was built from ONNX files that have since
been re-exported (stale), or when any engine file's size or sha256 differs from its
manifest. :meth:`ArtifactStore.load_engine_bytes` hashes the very bytes it hands to the
deserializer, so a damaged or truncated file is never deserialized.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sam2edge.backends.registry import RunnerSources
from sam2edge.config import resolve_name
from sam2edge.contract.edgetam_artifacts import specs_for_variant
from sam2edge.contract.manifest import MANIFEST_NAME, engine_dir, read_manifest, recorded_file, require, store_root
from sam2edge.contract.spec import ArtifactSpec
from sam2edge.engines.fingerprint import EngineFingerprint
from sam2edge.errors import EngineMismatchError, IntegrityError, UnknownModelError
from sam2edge.integrity import sha256_file

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16")
ENGINE_FORMAT = "sam2edge-tensorrt-engines/1"


@dataclass(frozen=True)
class OnnxSet:
    """One exported model: ``<root>/<variant>-<sha8>/onnx``."""

    dir: Path
    manifest: dict[str, Any]

    @property
    def variant(self) -> str:
        """The variant the manifest records (IntegrityError when it records none, or not a string)."""
        return require(self.manifest, "variant", str, self.dir)

    @property
    def specs(self) -> dict[str, ArtifactSpec]:
        """The artifact specs of the exported variant (EdgeTAM's memory artifacts differ from SAM2's)."""
        return specs_for_variant(self.variant)

    @property
    def checkpoint_sha256(self) -> str | None:
        """The full sha256 of the checkpoint the export was made from, as recorded."""
        sha = self.manifest.get("checkpoint_sha256")
        return sha.lower() if isinstance(sha, str) else None

    @property
    def model_dir(self) -> Path:
        return self.dir.parent

    def artifact_path(self, name: str) -> Path:
        return self.dir / f"{name}.onnx"

    def file_sha256(self, name: str) -> str | None:
        """sha256 the manifest records for artifact ``name`` (None when it records none)."""
        info = self.manifest.get("files", {}).get(f"{name}.onnx") or {}
        return info.get("sha256")

    def total_bytes(self) -> int:
        """Bytes of the artifacts and their external-data files (the fp32 weights, roughly)."""
        return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file() and p.name != MANIFEST_NAME)


@dataclass(frozen=True)
class EngineSet:
    """One engine set: ``<model>/tensorrt/<precision>/<slug>`` with its manifest."""

    dir: Path
    manifest: dict[str, Any]
    problems_found: tuple[str, ...] = field(default=(), compare=False)

    @property
    def precision(self) -> str:
        return str(self.manifest.get("precision", self.dir.parent.name))

    @property
    def fingerprint(self) -> EngineFingerprint:
        return EngineFingerprint.from_dict(self.manifest.get("fingerprint", {}))

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest.get("artifacts", {}))

    def device_memory_bytes(self) -> int | None:
        """Sum of the execution contexts' device memory (each runner holds its own context)."""
        values = [a.get("device_memory_bytes") for a in self.artifacts.values()]
        return None if not values or any(v is None for v in values) else int(sum(values))

    def weights_bytes(self) -> int:
        return int(sum(int(a.get("size", 0)) for a in self.artifacts.values()))

    def rebuild_command(self) -> str:
        return str(self.manifest.get("rebuild_command") or rebuild_command(self.dir.parents[2] / "onnx", self.precision))


def rebuild_command(onnx_dir: Path, precision: str, args: dict[str, Any] | None = None) -> str:
    """``sam2edge build <onnx dir> --precision ...`` with the build options that shaped the engines."""
    parts = ["sam2edge", "build", str(onnx_dir), "--precision", precision]
    for key, value in (args or {}).items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                parts += [flag, str(item)]
        else:
            parts += [flag, str(value)]
    return shlex.join(parts)


class ArtifactStore:
    """Lists, checks and loads what is under one store root."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = store_root(root)

    # -- layout ---------------------------------------------------------------------------
    def engine_dir(self, onnx: OnnxSet, precision: str, fingerprint: EngineFingerprint) -> Path:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        return engine_dir(onnx.model_dir, precision, fingerprint.slug())

    # -- listing --------------------------------------------------------------------------
    def onnx_sets(self) -> list[OnnxSet]:
        """Every ``<model>/onnx`` with a readable manifest naming its variant, sorted by folder name.

        A damaged entry (unreadable manifest, no variant) is skipped with a warning; the rest still serve.
        """
        out = []
        for folder in sorted(p for p in self.root.glob("*/onnx") if p.is_dir()):
            try:
                onnx = OnnxSet(folder, read_manifest(folder))
                onnx.variant  # noqa: B018 - validates the field
            except EngineMismatchError as exc:
                log.warning("sam2edge: skipping the damaged store entry %s: %s", folder, exc)
                continue
            out.append(onnx)
        return out

    def find_onnx(self, name: str, checkpoint_sha256: str | None = None) -> OnnxSet:
        """An exported model by folder (``.../onnx`` or its parent), ``<variant>-<sha8>`` or variant name.

        ``checkpoint_sha256``: only an export made from exactly that checkpoint (its full hash) qualifies.
        """
        path = Path(name)
        for candidate in (path / "onnx", path):
            if (candidate / MANIFEST_NAME).is_file():
                onnx = OnnxSet(candidate, read_manifest(candidate))
                _check_made_from(onnx, checkpoint_sha256)
                return onnx
        try:
            variant = resolve_name(name)
        except UnknownModelError:
            variant = name
        matches = [s for s in self.onnx_sets() if s.model_dir.name == name or s.variant == variant]
        if checkpoint_sha256 is not None:
            matches = [s for s in matches if s.checkpoint_sha256 == checkpoint_sha256.lower()]
        if not matches:
            made_from = f" made from checkpoint {checkpoint_sha256[:12]}..." if checkpoint_sha256 else ""
            raise EngineMismatchError(
                f"no exported model {name!r}{made_from} under {self.root}; run `sam2edge export {name} --store {self.root}` first"
            )
        if len(matches) > 1:
            names = ", ".join(m.model_dir.name for m in matches)
            raise EngineMismatchError(f"{name!r} matches several exported checkpoints ({names}); pass the folder")
        return matches[0]

    def engine_sets(self, onnx: OnnxSet | None = None) -> list[EngineSet]:
        """Engine sets of one model (or all), each with a readable manifest."""
        base = [onnx.model_dir] if onnx else [p.parent for p in self.root.glob("*/onnx")]
        out = []
        for model in base:
            for path in sorted(model.glob(f"tensorrt/*/*/{MANIFEST_NAME}")):
                try:
                    out.append(EngineSet(path.parent, read_manifest(path.parent)))
                except EngineMismatchError:
                    out.append(EngineSet(path.parent, {}, ("unreadable manifest.json",)))
        return out

    # -- checks ---------------------------------------------------------------------------
    def problems(self, engines: EngineSet, here: EngineFingerprint | None, onnx: OnnxSet | None = None,
                 hash_files: bool = True) -> list[str]:
        """Why ``engines`` cannot run here; empty when usable. ``hash_files=False`` checks sizes only."""
        out = list(engines.problems_found)
        m = engines.manifest
        if out:
            return out
        if m.get("format") != ENGINE_FORMAT:
            return [f"manifest format {m.get('format')!r} is not {ENGINE_FORMAT!r}"]
        if here is None:
            out.append("TensorRT or a CUDA GPU is not available here")
        else:
            out += [f"built for another machine ({d})" for d in engines.fingerprint.mismatches(here)]
        if onnx is not None:
            out += _stale(engines, onnx)
        for name, info in engines.artifacts.items():
            out += _file_problems(engines.dir, name, info, hash_files)
        return out

    def check(self, engines: EngineSet, here: EngineFingerprint | None, onnx: OnnxSet | None = None) -> None:
        """Raise EngineMismatchError with the rebuild command when ``engines`` cannot run here."""
        problems = self.problems(engines, here, onnx)
        if problems:
            raise EngineMismatchError(refusal(engines, problems))

    def runner_sources(self, onnx: OnnxSet | None, engines: EngineSet | None = None,
                       torch_loader: Callable[[str], Any] | None = None, threads: int | None = None) -> RunnerSources:
        """What the backends build runners from: the ONNX folder, verified engine loaders, a PyTorch loader."""
        loaders: dict[str, Callable[[], bytes]] = {}
        if engines is not None:
            for name in engines.artifacts:
                loaders[name] = partial(self.load_engine_bytes, engines, name)
        variant = onnx.variant if onnx else (engines.manifest.get("variant") if engines else None)
        return RunnerSources(onnx_dir=onnx.dir if onnx else None, engine_bytes=loaders,
                             engine_label=str(engines.dir) if engines else "", torch_loader=torch_loader, threads=threads,
                             variant=variant)

    def load_engine_bytes(self, engines: EngineSet, name: str) -> bytes:
        """The verified bytes of one engine file: inside the engine folder, size and sha256 checked on the
        bytes returned (what the deserializer gets), IntegrityError with the rebuild command otherwise."""
        info = engines.artifacts.get(name)
        if info is None:
            raise EngineMismatchError(refusal(engines, [f"no engine for artifact {name!r} in the manifest"]))
        try:
            return recorded_file(engines.dir, info, f"{name}.engine", "engine").read("engine")
        except IntegrityError as exc:
            raise IntegrityError(refusal(engines, [str(exc)])) from exc


def _check_made_from(onnx: OnnxSet, checkpoint_sha256: str | None) -> None:
    if checkpoint_sha256 is not None and onnx.checkpoint_sha256 != checkpoint_sha256.lower():
        raise EngineMismatchError(
            f"the export in {onnx.dir} was made from checkpoint {str(onnx.checkpoint_sha256)[:12]}..., not from "
            f"{checkpoint_sha256[:12]}...; export that checkpoint (sam2edge export CHECKPOINT)"
        )


def refusal(engines: EngineSet, problems: list[str]) -> str:
    listed = "\n".join(f"  - {p}" for p in problems)
    return (
        f"refusing the TensorRT engines in {engines.dir}:\n{listed}\n"
        f"rebuild them on this machine with:\n  {engines.rebuild_command()}"
    )


def _stale(engines: EngineSet, onnx: OnnxSet) -> list[str]:
    out = []
    sha = engines.manifest.get("checkpoint_sha256")
    if sha and onnx.checkpoint_sha256 and sha != onnx.checkpoint_sha256:
        out.append(f"stale: built from checkpoint {sha[:8]}, the exported model is {onnx.checkpoint_sha256[:8]}")
    for name, info in engines.artifacts.items():
        now = onnx.file_sha256(name)
        if now is None and not onnx.artifact_path(name).is_file():
            out.append(f"stale: {name}.onnx is no longer in {onnx.dir}")
        elif now is not None and info.get("onnx_sha256") != now:
            out.append(f"stale: {name}.engine was built from another {name}.onnx (re-exported since)")
    return out


def _file_problems(folder: Path, name: str, info: Any, hash_files: bool) -> list[str]:
    """Why one engine file of a manifest is not what it records ([] when it is); ``hash_files=False``: size only."""
    try:
        recorded = recorded_file(folder, info, f"{name}.engine", "engine")
    except IntegrityError as exc:
        return [str(exc)]
    path = recorded.path
    if not path.is_file():
        return [f"{path.name} is missing"]
    size = path.stat().st_size
    if recorded.size is not None and size != recorded.size:
        return [f"{path.name}: {size} bytes, manifest says {recorded.size} (truncated or damaged)"]
    if hash_files and sha256_file(path) != recorded.sha256:
        return [f"{path.name}: sha256 differs from the manifest (damaged or replaced)"]
    return []
