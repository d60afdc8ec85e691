"""hiera_small (slow): all four artifacts export, verify and pass the TensorRT check."""

from __future__ import annotations

import pytest

from sam2edge.contract.artifacts import ARTIFACTS, tolerance
from sam2edge.export.trt_compat import check_graph
from tests.export.conftest import export_random


@pytest.mark.slow
def test_export_small(tmp_path):
    exp = export_random(tmp_path, "sam2.1_hiera_small", seed=1)
    assert exp.manifest["variant"] == "sam2.1_hiera_small"
    for name, spec in ARTIFACTS.items():
        entry = exp.manifest["artifacts"][name]
        print(f"small {name}: parity {entry['parity']['max_abs']}")
        par = entry["parity"]
        assert all(par["max_abs"][o] <= tolerance(spec, o, par["reference_max_abs"][o]) for o in spec.output_names)
        assert check_graph(exp.onnx_dir / f"{name}.onnx", spec).ok
