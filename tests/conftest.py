"""Shared pytest configuration."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Keep the 2-core CI machine from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_report_header(config):
    return "sam2edge: oracle tests compare against the official sam2==1.1.0 package"


# -- measured figures in the test output ----------------------------------------------------
# Oracle and measurement tests print their worst differences; pytest hides the output of
# passing tests, so it is collected here and reprinted once at the end of the run.
_MEASURED: list[tuple[str, str]] = []
_REPORT_FILES = ("oracle", "test_predictor_api", "test_preprocess", "test_postprocess", "test_memory", "test_cache",
                 "test_stream", "test_tracker", "test_export", "test_verify", "test_onnx", "test_automatic",
                 "test_edgetam")


def pytest_runtest_logreport(report):
    if report.when != "call" or not any(key in report.nodeid for key in _REPORT_FILES):
        return
    text = "".join(content for name, content in report.sections if name.startswith("Captured stdout"))
    if text.strip():
        _MEASURED.append((report.nodeid, text.rstrip()))


def pytest_terminal_summary(terminalreporter):
    if not _MEASURED:
        return
    terminalreporter.section("measured: worst differences vs the oracle, and other figures")
    for nodeid, text in _MEASURED:
        terminalreporter.write_line(nodeid)
        for line in text.splitlines():
            if line.strip():
                terminalreporter.write_line("    " + line)


# -- one verified export of a random-weight hiera_tiny checkpoint per session ---------------------
# Shared by tests/export (what the export promises) and tests/server (the server runs on it): the
# export costs minutes on a 2-core CPU, so it happens once. tests/export/conftest.py re-exports
# Exported and export_random for the imports that name it.


@dataclass
class Exported:
    onnx_dir: Path
    checkpoint: Path
    manifest: dict[str, Any]
    model: Any  # our SAM2Model with the checkpoint's weights
    log: list[str]


def export_random(tmp: Path, name: str, seed: int = 0, **kwargs: Any) -> Exported:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import torch

    from sam2edge.contract.manifest import read_manifest
    from sam2edge.export.onnx_export import ExportSettings, export_checkpoint
    from sam2edge.model import build_model
    from sam2edge.model.checkpoint import load_checkpoint, write_random_checkpoint

    torch.set_num_threads(2)
    ckpt = write_random_checkpoint(tmp / f"{name}.pt", name, seed=seed)
    log: list[str] = []
    onnx_dir = export_checkpoint(ckpt, root=tmp / "engines", settings=ExportSettings(threads=2, **kwargs),
                                 progress=log.append)
    state, cfg = load_checkpoint(ckpt)
    model = build_model(cfg)
    model.load_state_dict(state, strict=True)
    return Exported(onnx_dir, ckpt, read_manifest(onnx_dir), model.eval(), log)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """All four artifacts of sam2.1_hiera_tiny (random weights), exported and verified once."""
    return export_random(tmp_path_factory.mktemp("export_tiny"), "sam2.1_hiera_tiny")
