"""Integrity of the files sam2edge loads: the one sha256, verified reads, paths kept inside their folder.

* :func:`sha256_file` / :func:`sha256_bytes`: hex SHA-256, streamed in 1 MiB chunks.
* :func:`read_verified`: the bytes of a file, hashed while they are read, refused unless size and
  sha256 are the recorded ones; the caller hands exactly those bytes on (to a deserializer or a
  session), so a file swapped after the check cannot be loaded.
* :func:`resolve_inside`: the path a manifest entry names, refused when it is absolute, climbs
  out with ``..``, or is (or passes through) a symbolic link that leaves the folder.

Standard library only: the light runtime verifies with no extra dependency.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from sam2edge.errors import IntegrityError

CHUNK = 1 << 20


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve_inside(folder: str | os.PathLike, name: str, what: str = "file") -> Path:
    """``folder / name`` for a manifest entry, or IntegrityError when it would leave ``folder``.

    Refused: absolute names, ``..`` components, backslashes or drive letters, and any path
    whose real location (symbolic links resolved) is outside the real ``folder``.
    """
    if not isinstance(name, str) or not name:
        raise IntegrityError(f"{what} entry must be a non-empty file name, got {name!r}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or "\\" in name or ":" in name or any(part in ("..", "") for part in pure.parts):
        raise IntegrityError(f"{what} {name!r} is not a plain path inside {folder} (absolute or '..' refused)")
    root = Path(folder)
    path = root.joinpath(*pure.parts)
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise IntegrityError(f"{what} {name!r} resolves to {real}, outside {real_root} (symbolic link refused)")
    return path


def read_verified(path: str | os.PathLike, sha256: str | None, size: int | None = None, what: str = "file") -> bytes:
    """The whole file, checked against ``size`` (when given) and ``sha256`` on the bytes returned.

    Raises IntegrityError naming the file and what differed; OSError becomes IntegrityError too.
    """
    path = Path(path)
    if not sha256 or not isinstance(sha256, str):
        raise IntegrityError(f"{what} {path.name}: no sha256 recorded for it; it cannot be verified")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise IntegrityError(f"{what} {path}: {exc.strerror or exc}") from exc
    if size is not None and len(data) != int(size):
        raise IntegrityError(f"{what} {path.name}: {len(data)} bytes, the manifest says {size} (truncated or damaged)")
    if sha256_bytes(data) != sha256.lower():
        raise IntegrityError(f"{what} {path.name}: sha256 differs from the manifest (damaged or replaced)")
    return data
