"""PyTorch runners: the same wrapper modules that are exported to ONNX, run eagerly.

Running the export wrappers (not ad-hoc model calls) keeps the PyTorch backend and the
exported artifacts on one interface: same tensor names, same semantics, same checks.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from sam2edge.errors import BackendRuntimeError, BackendUnavailableError
from sam2edge.export.spec import ArtifactSpec
from sam2edge.runtime.runner import Runner


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised in the no-torch subprocess test
        raise BackendUnavailableError("the PyTorch backend needs torch: pip install 'sam2edge[torch]'") from exc
    return torch


class TorchRunner(Runner):
    """Runs one artifact's wrapper module on a torch device. numpy in, numpy out."""

    def __init__(self, spec: ArtifactSpec, module: Any, device: str = "cpu", dtype: str = "float32") -> None:
        super().__init__(spec)
        torch = _torch()
        self.device = torch.device(device)
        self.backend = f"torch-{self.device.type}"
        self.module = module
        self.dtype = dtype

    def _activate_impl(self) -> None:
        self.module.to(self.device).eval()

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = _torch()
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
    from sam2edge.contract.edgetam_artifacts import specs_for
    from sam2edge.export.wrappers import build_wrapper

    specs = specs_for(model.cfg)
    names = artifacts or tuple(specs)
    return {name: TorchRunner(specs[name], build_wrapper(name, model), device) for name in names}
