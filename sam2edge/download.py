"""Finding checkpoints by name, offline first, and fetching the official ones into a local cache.

A variant name resolves, in this order, to ``$SAM2EDGE_MODELS_DIR/<name>.pt`` (checkpoints copied
by hand onto an air-gapped machine, used as they are), the download cache (``$SAM2EDGE_CACHE`` or
``~/.cache/sam2edge``, sha256-verified), and a download from the official host or from
``$SAM2EDGE_MIRROR`` (a base URL serving the files under their official names). Every command
resolves names here (``resolve_checkpoint``), so all of them honour these variables.

Only the standard library is used (urllib, hashlib), so the light runtime can fetch a
checkpoint without PyTorch or ``requests``. A download streams into ``<file>.part``; an
interrupted one resumes from there with an HTTP Range request (and starts over when the
server ignores the range). The finished file is hashed and moved into place atomically,
so the cache never holds a file whose hash was not checked. The lock file that serialises
concurrent downloads is removed when the download ends, whether it succeeded or not.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sam2edge import __version__
from sam2edge.config import get_config, resolve_name, variant_names
from sam2edge.errors import CheckpointError, DownloadError, UnknownModelError
from sam2edge.integrity import sha256_file

CACHE_ENV = "SAM2EDGE_CACHE"
MODELS_DIR_ENV = "SAM2EDGE_MODELS_DIR"  # hand-copied checkpoints: <dir>/<variant name>.pt
MIRROR_ENV = "SAM2EDGE_MIRROR"  # a base URL serving <variant name>.pt (air-gapped sites)
_CHUNK = 1 << 20
_STAMP_SUFFIX = ".verified"  # sidecar: the sha256 we checked, with the size and mtime it was checked at


def default_cache_dir() -> Path:
    """``$SAM2EDGE_CACHE`` if set, else ``~/.cache/sam2edge``."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sam2edge"


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + _STAMP_SUFFIX)


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    data = {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    with contextlib.suppress(OSError):  # the stamp only saves re-hashing; never fail for it
        _stamp_path(path).write_text(json.dumps(data))


def is_verified(path: Path, expected_sha256: str) -> bool:
    """Whether ``path`` exists with sha256 ``expected_sha256``.

    A sidecar stamp written at the last check skips re-hashing while the file's size and
    mtime are unchanged (hashing the 900 MB large checkpoint takes seconds on a Jetson).
    """
    if not path.is_file():
        return False
    st = path.stat()
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        stamp = json.loads(_stamp_path(path).read_text())
        if (stamp["sha256"], stamp["size"], stamp["mtime_ns"]) == (expected_sha256, st.st_size, st.st_mtime_ns):
            return True
    if sha256_file(path) != expected_sha256.lower():
        return False
    _write_stamp(path, expected_sha256.lower())
    return True


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` (POSIX only; a no-op elsewhere), removed on exit.

    The lock file is unlinked while it is held; a process that was waiting on it then finds that its
    open file is no longer the one at the path (inode check) and locks the new one, so removing the
    file never lets two processes hold the lock at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock = path.with_name(path.name + ".lock")
    while True:
        handle = open(lock, "a+b")  # noqa: SIM115 - closed below on every path
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                    break  # we hold the lock on the file that is at the path
            except FileNotFoundError:
                pass  # its holder removed it: lock the next one
        except BaseException:
            handle.close()
            raise
        handle.close()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        handle.close()


def mirror_url(filename: str) -> str | None:
    """``$SAM2EDGE_MIRROR/<filename>`` when a mirror is configured."""
    base = os.environ.get(MIRROR_ENV, "").strip()
    return f"{base.rstrip('/')}/{filename}" if base else None


def models_dir_checkpoint(name: str) -> Path | None:
    """``$SAM2EDGE_MODELS_DIR/<official name>.pt`` for a variant name or alias, if that file exists."""
    folder = os.environ.get(MODELS_DIR_ENV, "").strip()
    if not folder:
        return None
    try:
        official = resolve_name(name)
    except UnknownModelError:
        return None
    candidate = Path(folder).expanduser() / get_config(official).filename
    return candidate if candidate.is_file() else None


def offline_hint(name: str) -> str:
    """What to do when a checkpoint cannot be fetched."""
    cfg = get_config(name)
    where = os.environ.get(MODELS_DIR_ENV) or "<folder>"
    return (f"offline? copy {cfg.filename} (from {cfg.url}) to ${MODELS_DIR_ENV} (export {MODELS_DIR_ENV}={where}), "
            f"or point ${MIRROR_ENV} at a server that has it; see the README's 'Offline / air-gapped'")


class _Progress:
    """Percentage lines on stderr (every 5 %), or a tqdm bar when stderr is a terminal."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled, self.bar, self.last = label, enabled, None, -1

    def update(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if self.bar is None and sys.stderr.isatty():
            with contextlib.suppress(ImportError):
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, desc=self.label)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            return
        step = 100 * done // total // 5 * 5 if total else done // (50 * _CHUNK)
        if step != self.last:
            self.last = step
            size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
            pct = f"{step:3d}% " if total else ""
            print(f"sam2edge: downloading {self.label}: {pct}({size})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _Interrupted(DownloadError):
    """A transfer that stopped part-way; the ``.part`` file is kept and can be resumed."""


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": f"sam2edge/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch_once(url: str, part: Path, timeout: float, progress: _Progress) -> None:
    """One request: append to ``part`` (resuming) or rewrite it; raise DownloadError on failure.

    A short body (connection dropped) raises DownloadError and keeps ``part`` for a resume.
    """
    start = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left past our offset: the part may be complete
            return
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"download of {url} failed: cannot connect ({reason})") from e
    with resp:
        status = resp.status
        length = resp.headers.get("Content-Length")
        expected = int(length) if length is not None and length.isdigit() else None
        if status == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                raise DownloadError(
                    f"download of {url} failed: asked for bytes from {start}, server sent Content-Range "
                    f"{resp.headers.get('Content-Range')!r}"
                )
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:  # 200: a server that ignores Range sends the whole file again
            start, total, mode = 0, expected, "wb"
        with open(part, mode) as out:
            got = _stream(resp, out, start, total, progress, url)
    if expected is not None and got != expected:
        raise _Interrupted(
            f"download of {url} was cut short: received {got} of {expected} bytes (Content-Length); "
            f"the partial file {part} is kept and the next attempt resumes from it"
        )
    if total is not None and part.stat().st_size != total:
        raise DownloadError(f"download of {url} gave {part.stat().st_size} bytes, the server announced {total}")


def _stream(resp: BinaryIO, out: BinaryIO, start: int, total: int | None, progress: _Progress, url: str) -> int:
    got = 0
    try:
        for chunk in iter(lambda: resp.read(_CHUNK), b""):
            out.write(chunk)
            got += len(chunk)
            progress.update(start + got, total)
    except OSError as e:  # connection reset, timeout, IncompleteRead...
        raise _Interrupted(
            f"download of {url} was interrupted after {start + got} bytes ({e}); the partial file is kept "
            "and the next attempt resumes from it"
        ) from e
    return got


def download_checkpoint(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    url: str | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60,
    retries: int = 2,
) -> Path:
    """Download an official checkpoint into the cache and return its path.

    ``name`` is any registered variant name or alias; ``url`` and ``expected_sha256``
    override the registry's (mirrors, tests). A file already in the cache with the right
    hash is returned without touching the network. An interrupted transfer is retried
    ``retries`` times, each resuming from ``<file>.part``.

    Raises DownloadError on HTTP and connection errors, a short body or a hash mismatch
    (the bad file is deleted).
    """
    cfg = get_config(name)
    url = url or mirror_url(cfg.filename) or cfg.url
    sha = (expected_sha256 or cfg.sha256).lower()
    if not sha:  # EdgeTAM: its authors publish no hash, and an unverified download is never accepted
        raise DownloadError(
            f"no sha256 is published for {cfg.name}, so sam2edge cannot verify a download from {url}; pass "
            f"expected_sha256=... (`sam2edge download {cfg.name} --sha256 HASH`: a hash you trust), or download "
            f"{cfg.filename} yourself and pass its path (or put it in ${MODELS_DIR_ENV})"
        )
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"cannot download {cfg.name} from {url!r}: only http(s) URLs are supported")
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = folder / cfg.filename
    if is_verified(target, sha):
        return target
    if target.exists():
        print(f"sam2edge: {target} does not have sha256 {sha}; downloading it again", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    with _file_lock(target):
        if is_verified(target, sha):  # another process finished it while we waited
            return target
        part = target.with_name(target.name + ".part")
        bar = _Progress(cfg.filename, progress)
        try:
            _fetch_with_retries(url, part, timeout, bar, retries)
        except DownloadError as exc:
            raise type(exc)(f"{exc}; {offline_hint(cfg.name)}") from exc
        finally:
            bar.close()
        actual = sha256_file(part)
        if actual != sha:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"sha256 mismatch for {cfg.filename} downloaded from {url}: expected {sha}, got {actual}; "
                "the file was deleted (a corrupt transfer or a changed file on the server)"
            )
        os.replace(part, target)
        _write_stamp(target, sha)
    return target


def _fetch_with_retries(url: str, part: Path, timeout: float, bar: _Progress, retries: int) -> None:
    for attempt in range(retries + 1):
        try:
            _fetch_once(url, part, timeout, bar)
            return
        except _Interrupted as e:
            if attempt == retries:
                raise
            print(f"sam2edge: {e}; resuming (attempt {attempt + 2} of {retries + 1})", file=sys.stderr)


def cached_checkpoint_path(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where ``name``'s checkpoint lives in the cache (whether or not it is there)."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / get_config(name).filename


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    download: bool = True,
    **download_kwargs,
) -> Path:
    """A checkpoint path for an existing file, or a variant name: ``$SAM2EDGE_MODELS_DIR/<name>.pt``,
    else the verified cache, else downloaded (see the module docstring).

    Raises CheckpointError when it is neither, or when the cached file is absent or fails
    its sha256 and ``download`` is False.
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    try:
        official = resolve_name(str(name_or_path))
    except UnknownModelError as e:
        raise CheckpointError(
            f"checkpoint {str(name_or_path)!r} is neither an existing file nor a known variant; "
            f"pass a path to a .pt file or one of {variant_names()}"
        ) from e
    local = models_dir_checkpoint(official)
    if local is not None:
        return local
    cfg = get_config(official)
    target = cached_checkpoint_path(official, cache_dir)
    sha = download_kwargs.get("expected_sha256") or cfg.sha256
    if is_verified(target, sha):
        return target
    if not download:
        state = "fails its sha256 check" if target.exists() else "is not in the cache"
        raise CheckpointError(
            f"checkpoint {official} {state} ({target}) and ${MODELS_DIR_ENV} has no {cfg.filename}; run "
            f"`sam2edge download {official}` (or download_checkpoint({official!r})), or copy the file into "
            f"${MODELS_DIR_ENV} or ${CACHE_ENV}"
        )
    return download_checkpoint(official, cache_dir=cache_dir, **download_kwargs)
