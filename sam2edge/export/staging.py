"""Write a folder completely or not at all: stage beside it, swap into place, clean up on any interruption.

``staged_folder(target)`` yields an empty staging folder next to ``target``. When the block ends
normally the staging folder replaces ``target`` (two renames on the same filesystem; an old
``target`` is removed afterwards). When it raises, or the process gets SIGTERM/SIGHUP/SIGINT
(turned into KeyboardInterrupt while the block runs, in the main thread), the staging folder is
deleted and ``target`` is left exactly as it was. Staging folders left by processes that died
hard (SIGKILL, power loss) are removed by the next export into the same place.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    stage = target.parent / f".{target.name}.staging-{os.getpid()}-{secrets.token_hex(4)}"
    stage.mkdir()
    try:
        with _signals_interrupt():
            yield stage
            _swap(stage, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def remove_stale(target: Path) -> list[Path]:
    """Staging/old folders of ``target`` left by processes that are no longer running; returns those removed."""
    removed = []
    for path in target.parent.glob(f".{target.name}.*-*"):
        kind, _, rest = path.name[len(target.name) + 2:].partition("-")
        pid = rest.split("-")[0]
        if kind in ("staging", "old") and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _swap(stage: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(target, old)
    try:
        os.rename(stage, target)
    except BaseException:
        if old is not None and not target.exists():
            os.rename(old, target)  # put the previous folder back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP raise KeyboardInterrupt in the main thread while the block runs (cleanup can happen)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, interrupt) for s in _SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
