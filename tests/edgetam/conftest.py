"""Session fixtures for the EdgeTAM tests: one random checkpoint, our model, one oracle run.

Everything costly happens once per session: the random checkpoint (BatchNorm statistics
calibrated, see sam2edge.model.testing.randomize_model), our model loaded from it, and a single
subprocess of the official EdgeTAM code that computes every reference output the oracle
tests compare against (tests/edgetam/cases.py lists them).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.edgetam.oracle import HAVE_EDGETAM_ORACLE, requires_edgetam_oracle, run_official

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def edgetam_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sam2edge.model.checkpoint import write_random_checkpoint

    torch.set_num_threads(2)
    # Seed 1: prompted objects decode as present (object score > 0); with some seeds every prompt decodes
    # as absent (logits -1024), which would hide the prompt and memory paths in the video test.
    return write_random_checkpoint(tmp_path_factory.mktemp("edgetam") / "edgetam.pt", "edgetam", seed=1)


@pytest.fixture(scope="session")
def edgetam_model(edgetam_checkpoint: Path):
    """Our SAM2Model for EdgeTAM with the checkpoint's weights (eval, CPU)."""
    from sam2edge.model import build_model
    from sam2edge.model.checkpoint import load_checkpoint

    state, cfg = load_checkpoint(edgetam_checkpoint)
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(scope="session")
def edgetam_cases(tmp_path_factory: pytest.TempPathFactory):
    from tests.edgetam.cases import make_cases

    return make_cases(tmp_path_factory.mktemp("edgetam_clip"))


@pytest.fixture(scope="session")
def official(edgetam_checkpoint: Path, edgetam_cases) -> dict:
    """Every reference output, from one run of the official EdgeTAM code in its venv."""
    if not HAVE_EDGETAM_ORACLE:
        pytest.skip(requires_edgetam_oracle.kwargs["reason"])
    t0 = time.perf_counter()
    out = run_official(edgetam_checkpoint, edgetam_cases.tasks, edgetam_cases.arrays)
    print(f"\n[edgetam oracle] all reference outputs in {time.perf_counter() - t0:.1f}s")
    return out


@pytest.fixture(scope="session")
def edgetam_export(edgetam_checkpoint: Path, edgetam_model, tmp_path_factory: pytest.TempPathFactory):
    """All four EdgeTAM artifacts exported once per session by ``sam2edge export CHECKPOINT --store DIR``
    (the CLI path: verified against the model as loaded, manifest written) -> tests.conftest.Exported.

    The store holds it under ``edgetam-<sha8>/onnx``, so ``--model edgetam --store DIR`` with the
    checkpoint in $SAM2EDGE_MODELS_DIR finds it (tests/edgetam/test_edgetam_apps.py)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from sam2edge.cli.main import main
    from sam2edge.contract.manifest import read_manifest
    from tests.conftest import Exported

    store = tmp_path_factory.mktemp("edgetam_store")
    t0 = time.perf_counter()
    assert main(["export", str(edgetam_checkpoint), "--store", str(store), "--threads", "2"]) == 0
    (onnx_dir,) = store.glob("edgetam-*/onnx")
    print(f"\n[edgetam export] all four artifacts exported and verified in {time.perf_counter() - t0:.1f}s")
    return Exported(onnx_dir, edgetam_checkpoint, read_manifest(onnx_dir), edgetam_model, [])
