"""``manifest.json``: what an artifact folder was built from, and what it was verified to.

Generic on purpose: the ONNX export writes one in ``<store>/<variant>-<sha8>/onnx/`` and
the TensorRT build writes its own beside the engines, each with the keys it needs. The
helpers here only read/write JSON atomically, hash files and collect library versions.

Store layout (shared by every backend)::

    <root>/<variant>-<ckpt_sha256[:8]>/onnx/{manifest.json, image_encoder.onnx, ...}
    <root>/<variant>-<ckpt_sha256[:8]>/tensorrt/<precision>/<device-slug>/...

``<root>`` is ``$SAM2EDGE_ENGINES`` or ``engines/``.

No heavy imports: the light runtime reads manifests without torch or onnx.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam2edge.errors import EngineMismatchError, IntegrityError
from sam2edge.integrity import read_verified, resolve_inside, sha256_file

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
STORE_ENV = "SAM2EDGE_STORE"
STORE_ENV_FORMER = "SAM2EDGE_ENGINES"  # still honoured
DEFAULT_STORE = "engines"


def store_root(root: str | os.PathLike | None = None) -> Path:
    """The store root: ``root`` if given, else ``$SAM2EDGE_STORE`` (or ``$SAM2EDGE_ENGINES``), else ``engines/``."""
    if root is not None:
        return Path(root)
    return Path(os.environ.get(STORE_ENV) or os.environ.get(STORE_ENV_FORMER) or DEFAULT_STORE)


def model_dir(root: str | os.PathLike | None, variant: str, ckpt_sha256: str) -> Path:
    """``<root>/<variant>-<sha8>``: everything built from one checkpoint."""
    return store_root(root) / f"{variant}-{ckpt_sha256[:8]}"


def onnx_dir(root: str | os.PathLike | None, variant: str, ckpt_sha256: str) -> Path:
    """``<root>/<variant>-<sha8>/onnx``: the ONNX artifacts and their manifest."""
    return model_dir(root, variant, ckpt_sha256) / "onnx"


def engine_dir(model: str | os.PathLike, precision: str, device_slug: str) -> Path:
    """``<model>/tensorrt/<precision>/<device-slug>``: one TensorRT engine set and its manifest."""
    return Path(model) / "tensorrt" / precision / device_slug


def write_manifest(directory: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` as ``<directory>/manifest.json`` atomically (temp file + rename).

    ``schema_version`` is added when absent. Returns the path written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = {"schema_version": SCHEMA_VERSION, **manifest}
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / MANIFEST_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return directory / MANIFEST_NAME


def read_manifest(directory: str | os.PathLike) -> dict[str, Any]:
    """Read ``<directory>/manifest.json``; EngineMismatchError if missing or unreadable."""
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise EngineMismatchError(f"no {MANIFEST_NAME} in {directory}; export the model first (sam2edge export ...)")
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise EngineMismatchError(f"unreadable manifest {path}: {e}; re-run the export") from e
    if not isinstance(data, dict):
        raise EngineMismatchError(f"manifest {path} is not a JSON object; re-run the export")
    return data


def require(manifest: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str | os.PathLike) -> Any:
    """``manifest[key]`` when it has type ``kind``; IntegrityError naming the manifest, the key and what came."""
    value = manifest.get(key, _MISSING) if isinstance(manifest, Mapping) else _MISSING
    if value is _MISSING or not isinstance(value, kind) or isinstance(value, bool) and bool not in _types(kind):
        names = "/".join(t.__name__ for t in _types(kind))
        got = "nothing" if value is _MISSING else f"{type(value).__name__} {str(value)[:60]!r}"
        raise IntegrityError(f"{Path(where) / MANIFEST_NAME}: field {key!r} must be {names}, got {got}; "
                             "re-run the export (or the build) that wrote it")
    return value


@dataclass(frozen=True)
class RecordedFile:
    """A file a manifest names: where it is (checked to be inside the folder) and what it must be."""

    path: Path
    sha256: str
    size: int | None

    def read(self, what: str = "artifact") -> bytes:
        """The file's bytes, verified against the record while read (IntegrityError otherwise)."""
        return read_verified(self.path, self.sha256, self.size, what)

    def check(self) -> None:
        """Hash the file on disk against the record (streamed, nothing kept)."""
        if not self.path.is_file():
            raise IntegrityError(f"{self.path} named in the manifest is missing")
        if self.size is not None and self.path.stat().st_size != self.size:
            raise IntegrityError(f"{self.path.name}: {self.path.stat().st_size} bytes, the manifest says {self.size}")
        if sha256_file(self.path) != self.sha256:
            raise IntegrityError(f"{self.path.name}: sha256 differs from the manifest (damaged or replaced)")


def recorded_file(directory: str | os.PathLike, entry: Any, default_name: str, where: str = "artifact") -> RecordedFile:
    """The file a manifest entry (``{"file", "sha256", "size"}``) names, inside ``directory``.

    IntegrityError when the entry is malformed, names a path outside the folder (absolute, ``..``, a
    symbolic link leaving it) or records no sha256.
    """
    if not isinstance(entry, Mapping):
        raise IntegrityError(f"{where} entry in {directory} must be an object, got {type(entry).__name__}")
    name = entry.get("file", default_name)
    sha = entry.get("sha256")
    size = entry.get("size")
    if not isinstance(sha, str) or len(sha) != 64:
        raise IntegrityError(f"{where} {name!r} in {directory}: no valid sha256 recorded; it cannot be verified")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise IntegrityError(f"{where} {name!r} in {directory}: size must be a non-negative integer, got {size!r}")
    return RecordedFile(resolve_inside(directory, name, where), sha.lower(), size)


def verify_files(directory: str | os.PathLike, manifest: dict[str, Any] | None = None) -> None:
    """Check every file ``manifest["files"]`` names (inside the folder, same size and sha256).

    Raises IntegrityError (an EngineMismatchError) naming the first file that is missing or differs.
    """
    directory = Path(directory)
    manifest = manifest if manifest is not None else read_manifest(directory)
    for name, info in require(manifest, "files", dict, directory).items():
        recorded_file(directory, {**info, "file": name} if isinstance(info, dict) else info, name, "file").check()


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_MISSING = object()


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed versions of ``names`` (None where absent), plus python and sam2edge."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("sam2edge", *names):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def spec_to_dict(spec: Any) -> dict[str, Any]:
    """An ArtifactSpec as plain JSON: tensors with dtype, shape (dim names) and docs, dims with ranges."""

    def tensor(t: Any) -> dict[str, Any]:
        shape = [d if isinstance(d, int) else d.name for d in t.shape]
        return {"name": t.name, "dtype": t.dtype, "shape": shape, "doc": t.doc}

    return {
        "name": spec.name,
        "doc": spec.doc,
        "inputs": [tensor(t) for t in spec.inputs],
        "outputs": [tensor(t) for t in spec.outputs],
        "dims": {n: {"min": d.min, "opt": d.opt, "max": d.max} for n, d in spec.dims().items()},
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars / arrays
        return obj.tolist()
    raise TypeError(f"manifest value of type {type(obj).__name__} is not JSON serialisable")
