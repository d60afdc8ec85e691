"""Shared fixtures: one verified export of a random-weight hiera_tiny checkpoint per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


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
