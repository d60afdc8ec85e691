"""A Triton Inference Server model repository made from an export set in the store.

One model per artifact, named ``<prefix>_<artifact>``::

    <out>/<prefix>_image_encoder/config.pbtxt
    <out>/<prefix>_image_encoder/1/<files>
    ...
    <out>/sam2edge_repository.json        what was written, from which export, every file's sha256 (per prefix)

Platforms:

* ``onnxruntime``: Triton's ONNX Runtime backend runs ``<artifact>.onnx`` (GPU instances by default).
* ``tensorrt``: Triton's TensorRT backend runs the store's engines of one precision; one plan per GPU
  model (compute capability) with ``cc_model_filenames``, so one repository serves a mixed cluster.
  Triton's TensorRT must be the version the engines were built with (recorded per model).
* ``python``: Triton's Python backend runs ``model.py`` (:mod:`sam2edge.scale.triton_python_model`)
  around sam2edge's ONNX Runtime runner, with a copy of sam2edge beside it (CPU instances by default).

Every file is copied while it is hashed and must match the sha256 its manifest recorded
(IntegrityError otherwise, and the half-written model folder is removed); stale engines (built
from another ONNX file or checkpoint) are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.contract.edgetam_artifacts import specs_for_variant
from sam2edge.contract.manifest import RecordedFile, recorded_file, require, spec_to_dict
from sam2edge.contract.serving import (
    PARAM_ARTIFACT,
    PARAM_CHECKPOINT,
    PARAM_FILE,
    PARAM_FILE_SHA256,
    PARAM_FILE_SIZE,
    PARAM_HOST_CONSTANTS,
    PARAM_SPEC,
    PARAM_THREADS,
    PARAM_VARIANT,
    batch_dim,
    check_prefix,
    default_prefix,
    model_name,
    spec_digest,
)
from sam2edge.engines.store import ArtifactStore, EngineSet, OnnxSet
from sam2edge.errors import EngineMismatchError, InputError, IntegrityError
from sam2edge.scale.triton_config import PLATFORMS, Serving, config_text, max_batch_size

log = logging.getLogger(__name__)

VERSION = "1"
REPOSITORY_RECORD = "sam2edge_repository.json"
RECORD_FORMAT = "sam2edge-triton-repository/1"
PYTHON_MODEL = Path(__file__).with_name("triton_python_model.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the sam2edge package copied beside model.py
CHUNK = 1 << 20


@dataclass(frozen=True)
class WrittenModel:
    """One model folder of the repository."""

    name: str
    artifact: str
    platform: str
    max_batch_size: int
    dynamic_batching: bool
    files: dict[str, str] = field(default_factory=dict)  # path in the version folder -> sha256


def copy_verified(recorded: RecordedFile, dest: Path) -> str:
    """Copy a recorded file, hashing what is read; IntegrityError (and no ``dest``) when it is not what was recorded."""
    digest, size = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = open(recorded.path, "rb")  # noqa: SIM115 - closed below; a missing source is not a failed write
    except FileNotFoundError:
        raise IntegrityError(f"{recorded.path} named in the manifest is missing") from None
    with src, open(dest, "wb") as dst:  # an OSError here is the destination's: the writer names the folder
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
    if digest.hexdigest() != recorded.sha256 or (recorded.size is not None and size != recorded.size):
        dest.unlink(missing_ok=True)
        raise IntegrityError(f"{recorded.path}: {size} bytes, sha256 {digest.hexdigest()[:12]}..., the manifest records "
                             f"{recorded.size} bytes, {recorded.sha256[:12]}... (damaged or replaced); re-run the export/build")
    return recorded.sha256


def onnx_files(onnx: OnnxSet, artifact: str) -> tuple[RecordedFile, list[RecordedFile]]:
    """The artifact's ONNX file and its external-data files, as the export manifest records them."""
    listed = require(onnx.manifest, "artifacts", dict, onnx.dir)
    info = listed.get(artifact)
    if info is None:
        raise EngineMismatchError(f"{artifact} is not in the export {onnx.dir}; export it (--artifacts {artifact})")
    if info.get("spec") != spec_to_dict(specs_for_variant(onnx.variant)[artifact]):
        raise EngineMismatchError(f"{artifact} in {onnx.dir} was exported with another interface than this sam2edge "
                                  "expects; re-run `sam2edge export`")
    main = recorded_file(onnx.dir, info, f"{artifact}.onnx", f"{artifact} ONNX file")
    files = onnx.manifest.get("files", {}) if isinstance(onnx.manifest.get("files"), dict) else {}
    data = [recorded_file(onnx.dir, {**entry, "file": name}, name, f"{artifact} external data")
            for name, entry in files.items() if name.startswith(main.path.name + ".") and isinstance(entry, dict)]
    return main, data


def engine_sets_by_cc(store: ArtifactStore, onnx: OnnxSet, precision: str, chosen: Sequence[str] = ()) -> dict[str, EngineSet]:
    """Compute capability -> the engine set serving it (stale or damaged sets refused, one set per capability)."""
    sets = [e for e in store.engine_sets(onnx) if e.precision == precision]
    if chosen:
        wanted = {str(Path(c).resolve()) for c in chosen}
        sets = [e for e in sets if str(e.dir.resolve()) in wanted]
    if not sets:
        raise EngineMismatchError(f"no {precision} TensorRT engines of {onnx.model_dir.name} in the store; build them on "
                                  f"each GPU model to serve (sam2edge build {onnx.dir} --precision {precision})")
    by_cc: dict[str, EngineSet] = {}
    for es in sets:
        problems = store.problems(es, es.fingerprint, onnx)  # its own fingerprint: this machine is not the server
        if problems:
            raise EngineMismatchError(f"engines in {es.dir} cannot be served: {'; '.join(problems)}; "
                                      f"rebuild: {es.rebuild_command()}")
        cc = es.fingerprint.compute_capability
        if cc in by_cc:
            raise EngineMismatchError(f"two {precision} engine sets for compute capability {cc}: {by_cc[cc].dir} and "
                                      f"{es.dir}; pick one per GPU model with --engine-set DIR")
        by_cc[cc] = es
    return by_cc


class RepositoryWriter:
    """Writes the repository of one export set (see the module docstring)."""

    def __init__(self, onnx: OnnxSet, out: Path, platform: str, serving: Serving, prefix: str | None = None,
                 store: ArtifactStore | None = None, precision: str = "fp16", engines: Sequence[str] = (),
                 threads: int | None = None, overwrite: bool = False) -> None:
        if platform not in PLATFORMS:
            raise InputError(f"platform must be one of {list(PLATFORMS)}, got {platform!r}")
        self.onnx, self.out, self.platform, self.serving = onnx, Path(out), platform, serving
        self.prefix = check_prefix(default_prefix(onnx.variant) if prefix is None else prefix)
        self.store, self.precision, self.engines, self.overwrite = store or ArtifactStore(), precision, engines, overwrite
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be an integer >= 1, got {threads!r}")
        self.threads = threads
        self.specs = specs_for_variant(onnx.variant)  # EdgeTAM's differ from SAM2's (same names)

    def base_parameters(self, artifact: str) -> dict[str, str]:
        params = {PARAM_VARIANT: self.onnx.variant, PARAM_CHECKPOINT: self.onnx.checkpoint_sha256 or "",
                  PARAM_ARTIFACT: artifact, PARAM_SPEC: spec_digest(self.specs[artifact])}
        constants = self.onnx.manifest.get("host_constants")
        if constants:  # video mask prompts need them on the client; every model carries them
            params[PARAM_HOST_CONSTANTS] = json.dumps(constants, separators=(",", ":"))
        return params

    def write(self, artifacts: Sequence[str] | None = None, progress: Callable[[str], None] | None = None) -> list[WrittenModel]:
        listed = require(self.onnx.manifest, "artifacts", dict, self.onnx.dir)
        names = list(artifacts) if artifacts else [a for a in ARTIFACTS if a in listed]
        unknown = [a for a in names if a not in ARTIFACTS]
        if unknown:
            raise InputError(f"unknown artifacts {unknown}; known: {list(ARTIFACTS)}")
        by_cc = engine_sets_by_cc(self.store, self.onnx, self.precision, self.engines) if self.platform == "tensorrt" else {}
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.out} cannot be created: {exc.strerror or exc}") from None
        written = []
        for artifact in names:
            folder = self.out / model_name(self.prefix, artifact)
            if folder.exists():
                if not self.overwrite:
                    raise InputError(f"{folder} exists; pass overwrite=True (--overwrite) to replace it")
                shutil.rmtree(folder)
            try:
                written.append(self._write_model(artifact, folder, by_cc))
            except OSError as exc:  # a full disk, a read-only folder: the model folder is not left half-written
                shutil.rmtree(folder, ignore_errors=True)
                raise InputError(f"{folder} cannot be written: {exc.strerror or exc}") from None
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            if progress:
                progress(f"{folder.name}: {self.platform}, max_batch_size {written[-1].max_batch_size}")
        self._record(written)
        return written

    def _write_model(self, artifact: str, folder: Path, by_cc: dict[str, EngineSet]) -> WrittenModel:
        spec, version = self.specs[artifact], folder / VERSION
        params, files = self.base_parameters(artifact), {}
        default_file, cc_files, engine_max = None, None, None
        if self.platform == "tensorrt":
            cc_files = {}
            for cc, es in sorted(by_cc.items()):
                info = es.artifacts.get(artifact)
                if info is None:
                    raise EngineMismatchError(f"no {artifact} engine in {es.dir}; rebuild: {es.rebuild_command()}")
                filename = f"{artifact}-{es.dir.name}.plan"
                files[filename] = copy_verified(recorded_file(es.dir, info, f"{artifact}.engine", "engine"), version / filename)
                cc_files[cc] = filename
                params[f"sam2edge_tensorrt_sm{cc.replace('.', '')}"] = es.fingerprint.tensorrt
                dim = batch_dim(artifact)
                if dim is not None:
                    built = dict(info.get("dims", {})).get(dim.name, {}).get("max")
                    engine_max = min(v for v in (engine_max, built) if v is not None) if built is not None else engine_max
            default_file = next(iter(cc_files.values())) if len(cc_files) == 1 else None
        else:
            main, data = onnx_files(self.onnx, artifact)
            for rec in (main, *data):
                files[rec.path.name] = copy_verified(rec, version / rec.path.name)
            params.update({PARAM_FILE: main.path.name, PARAM_FILE_SHA256: main.sha256,
                           PARAM_FILE_SIZE: str(main.path.stat().st_size)})
            if self.platform == "python":
                shutil.copyfile(PYTHON_MODEL, version / "model.py")
                _copy_package(version / "sam2edge")
                if self.threads:
                    params[PARAM_THREADS] = str(self.threads)
            else:
                default_file = main.path.name
        text = config_text(spec, folder.name, self.platform, self.serving, params, default_file, cc_files, engine_max)
        (folder / "config.pbtxt").write_text(text)
        batch = max_batch_size(spec, self.serving, engine_max)
        return WrittenModel(folder.name, artifact, self.platform, batch, batch > 0 and self.serving.dynamic_batching, files)

    def _record(self, written: list[WrittenModel]) -> None:
        """Add this write to ``sam2edge_repository.json`` (one entry per prefix: several exports can share a repository)."""
        entry = {"platform": self.platform, "prefix": self.prefix, "variant": self.onnx.variant,
                 "checkpoint_sha256": self.onnx.checkpoint_sha256, "export": str(self.onnx.dir),
                 "serving": asdict(self.serving), "models": [asdict(w) for w in written]}
        if self.platform == "tensorrt":
            entry["precision"] = self.precision
        path = self.out / REPOSITORY_RECORD
        try:
            writes = [w for w in json.loads(path.read_text()).get("writes", []) if w.get("prefix") != self.prefix]
        except (OSError, ValueError, AttributeError):
            writes = []
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"format": RECORD_FORMAT, "writes": [*writes, entry]}, indent=2) + "\n")
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise InputError(f"{path} cannot be written: {exc.strerror or exc}") from None


def _copy_package(dest: Path) -> None:
    """The sam2edge package's Python sources (no caches, no static web files) beside model.py."""
    shutil.copytree(PACKAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static"))


def write_repository(export: str | os.PathLike, out: str | os.PathLike, platform: str = "python",
                     serving: Serving | None = None, prefix: str | None = None, store_root: str | os.PathLike | None = None,
                     artifacts: Sequence[str] | None = None, precision: str = "fp16", engines: Sequence[str] = (),
                     threads: int | None = None, overwrite: bool = False,
                     progress: Callable[[str], None] | None = None) -> list[WrittenModel]:
    """Write ``out`` from the export set ``export`` (a folder, ``<variant>-<sha8>`` or a variant in the store).

    ``serving`` defaults to GPU instances for onnxruntime/tensorrt and CPU instances for python.
    """
    store = ArtifactStore(store_root)
    onnx = store.find_onnx(str(export))
    if serving is None:
        serving = Serving(kind="cpu" if platform == "python" else "gpu")
    writer = RepositoryWriter(onnx, Path(out), platform, serving, prefix, store, precision, engines, threads, overwrite)
    return writer.write(artifacts, progress)

