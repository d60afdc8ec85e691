"""PyTorch runners: the same wrapper modules that are exported to ONNX, run eagerly.

Running the export wrappers (not ad-hoc model calls) keeps the PyTorch backend and the
exported artifacts on one interface: same tensor names, same semantics, same checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.backends.lazy import import_torch
from sam2edge.backends.registry import RunnerSources
from sam2edge.contract.edgetam_artifacts import specs_for
from sam2edge.contract.spec import ArtifactSpec
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError


class TorchRunner(Runner):
    """Runs one artifact's wrapper module on a torch device. numpy in, numpy out."""

    def __init__(self, spec: ArtifactSpec, module: Any, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__(spec)
        torch = import_torch()
        self.device = torch.device(device)
        self.backend = f"torch-{self.device.type}"
        self.module = module
        self.dtype = dtype

    def _activate_impl(self) -> None:
        self.module.to(self.device).eval()

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = import_torch()
        with warnings.catch_warnings():
            # Cached arrays are read-only on purpose; the modules never write into their inputs.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            args = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in self.spec.input_names]
        try:
            with torch.inference_mode():
                outs = self.module(*args)
        except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
            raise BackendRuntimeError(f"{self.describe()}: CUDA out of memory ({exc})") from exc
        if not isinstance(outs, tuple | list):
            outs = (outs,)
        return {n: o.detach().to("cpu").float().numpy() if o.is_floating_point() else o.cpu().numpy()
                for n, o in zip(self.spec.output_names, outs)}


def make_torch_runners(model: Any, device: str = "cpu", artifacts: tuple[str, ...] | None = None) -> dict[str, Runner]:
    """One TorchRunner per artifact around a loaded SAM2Model."""
    from sam2edge.model.wrappers import build_wrapper

    specs = specs_for(model.cfg)
    names = artifacts or tuple(specs)
    return {name: TorchRunner(specs[name], build_wrapper(name, model), device) for name in names}


def create_runners(sources: RunnerSources, device: str, artifacts: Sequence[str]) -> dict[str, Runner]:
    """The registry factory: the PyTorch model loaded on ``device`` by ``sources.torch_loader``, one runner per artifact."""
    if sources.torch_loader is None:
        raise BackendUnavailableError("no PyTorch model loader was given (load from a checkpoint to use PyTorch)")
    return make_torch_runners(sources.torch_loader(device), device, tuple(artifacts))
