"""The runner contract shared by every backend (PyTorch, ONNX Runtime, TensorRT).

A runner executes one artifact (image encoder, prompt decoder, memory attention, memory
encoder) described by an :class:`~sam2edge.contract.spec.ArtifactSpec`. The base class owns
the lifecycle and the input checks; a backend implements ``_activate_impl``,
``_infer_impl`` and ``_deactivate_impl`` only.

Inputs and outputs are numpy arrays keyed by the spec's tensor names, so the predictor
and tracker above never depend on the backend library.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from sam2edge.contract.spec import ArtifactSpec

log = logging.getLogger(__name__)


class Runner(ABC):
    """Lifecycle: ``activate() -> infer()* -> deactivate()``; also a context manager.

    ``infer`` activates lazily on first use. Calls are serialised by a lock unless the
    backend declares ``thread_safe = True``.
    """

    backend: str = "abstract"  # e.g. "torch-cpu", "onnxruntime-cpu", "tensorrt"
    thread_safe: bool = False

    def __init__(self, spec: ArtifactSpec) -> None:
        self.spec = spec
        self.is_active = False
        self._lock = threading.RLock()

    # -- lifecycle -------------------------------------------------------------------
    def activate(self) -> Runner:
        with self._lock:
            if not self.is_active:
                self._activate_impl()
                self.is_active = True
        return self

    def deactivate(self) -> None:
        with self._lock:
            if self.is_active:
                self._deactivate_impl()
                self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- inference -------------------------------------------------------------------
    def infer(self, feeds: Mapping[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """Run the artifact. ``feeds`` maps every input name of the spec to an array."""
        if check:
            self.spec.check_inputs(feeds)
        if not self.is_active:
            self.activate()
        if self.thread_safe:
            return self._infer_impl(feeds)
        with self._lock:
            return self._infer_impl(feeds)

    @abstractmethod
    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _activate_impl(self) -> None:  # noqa: B027 - optional hook
        pass

    def _deactivate_impl(self) -> None:  # noqa: B027 - optional hook
        pass

    def describe(self) -> str:
        return f"{self.backend}:{self.spec.name}"
