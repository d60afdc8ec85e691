"""One exception hierarchy for sam2edge.

Every message names the argument or tensor, what was expected, what came, and where
possible the fix. ``assert`` is kept for internal invariants only.
"""

from __future__ import annotations


class Sam2EdgeError(Exception):
    """Base class of every error raised on purpose by sam2edge."""


class UnknownModelError(Sam2EdgeError, ValueError):
    """A model name or alias that matches no registered variant."""


class CheckpointError(Sam2EdgeError):
    """A checkpoint file that is missing, unreadable, truncated or matches no variant."""


class DownloadError(CheckpointError):
    """A checkpoint download that failed or whose sha256 did not match."""


class InputError(Sam2EdgeError, ValueError):
    """A malformed call: wrong shape, dtype, range, count or missing argument."""


class UnknownImageHashError(InputError, KeyError):
    """An image hash that is not in the embeddings cache."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ExportError(Sam2EdgeError):
    """An export that failed or whose artifact did not match the reference."""


class EngineBuildError(Sam2EdgeError):
    """A TensorRT engine build that failed or did not verify."""


class EngineMismatchError(Sam2EdgeError):
    """A stored engine or artifact that does not fit this machine or its manifest."""


class IntegrityError(EngineMismatchError):
    """A file that is not what its manifest recorded (hash, size), or a path that leaves its folder."""


class BackendUnavailableError(Sam2EdgeError):
    """A backend that cannot run here (library missing, no GPU, not enough memory)."""


class BackendRuntimeError(Sam2EdgeError):
    """A backend that failed while running (out of memory, driver error)."""


class VideoError(Sam2EdgeError):
    """A video source or tracker state error."""
