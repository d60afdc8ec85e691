"""``sam2edge export``: progress on stderr, the onnx folder on stdout, errors as exit code 1."""

from __future__ import annotations

import argparse

import pytest

from sam2edge.cli.export import add_arguments, run
from sam2edge.cli.main import main
from sam2edge.contract.manifest import read_manifest


def test_arguments_defaults():
    args = add_arguments(argparse.ArgumentParser()).parse_args(["sam2.1_hiera_tiny"])
    assert args.checkpoint == "sam2.1_hiera_tiny" and args.artifacts is None and args.exporter == "dynamo"
    assert args.opset is None and args.store is None


def test_missing_checkpoint_is_exit_code_1(capsys):
    assert main(["export", "/nonexistent/ckpt.pt", "--store", "/tmp/unused"]) == 1
    assert "neither an existing file nor a known variant" in capsys.readouterr().err


def test_export_one_artifact_with_progress(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from sam2edge.model.checkpoint import write_random_checkpoint

    ckpt = write_random_checkpoint(tmp_path / "t.pt", "sam2.1_hiera_tiny", seed=5)
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args([str(ckpt), "--out", str(tmp_path / "engines"), "--artifacts", "memory_encoder",
                              "--threads", "2"])
    assert run(args) == 0
    out, err = capsys.readouterr()
    onnx_dir = out.strip().splitlines()[-1]
    assert onnx_dir.startswith(str(tmp_path / "engines" / "sam2.1_hiera_tiny-")) and onnx_dir.endswith("onnx")
    assert "[memory_encoder] exporting" in err and "verified" in err and "wrote" in err
    manifest = read_manifest(onnx_dir)
    assert list(manifest["artifacts"]) == ["memory_encoder"]
