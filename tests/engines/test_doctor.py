"""`sam2edge doctor` and `sam2edge build` hooks: on this machine, and over recorded machines."""

from __future__ import annotations

import pytest

from sam2edge.cli.doctor import doctor_report
from sam2edge.cli.main import main
from sam2edge.engines.store import ArtifactStore
from tests.engines.recorded import (
    JETSON_INSTALLED,
    JETSON_ORIN_NANO,
    NOTHING_INSTALLED,
    fingerprint_of,
    make_engine_set,
    make_onnx_export,
)


def test_doctor_on_this_machine(tmp_path, capsys):
    rc = main(["doctor", "--engines", str(tmp_path), "--json"])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0
    assert "GPU: none" in out and "TensorRT: not installed" in out and "CPUExecutionProvider" in out
    assert "-> torch-cpu" in out and "no CUDA GPU" in out
    assert '"gpus": []' in out


def test_doctor_recorded_jetson_with_engines(tmp_path):
    onnx_dir = make_onnx_export(tmp_path)
    make_engine_set(onnx_dir, fingerprint_of(JETSON_ORIN_NANO, JETSON_INSTALLED))
    report = doctor_report(JETSON_ORIN_NANO, JETSON_INSTALLED, ArtifactStore(tmp_path))
    print(report.text)
    assert report.usable
    assert "Jetson: NVIDIA Jetson Orin Nano" in report.text and "power mode 15W" in report.text
    assert "shares memory with the CPU" in report.text and "usable here" in report.text
    assert "auto backend for sam2.1_hiera_tiny (batch 1): tensorrt on cuda:0" in report.text


def test_doctor_nothing_usable_exits_non_zero(tmp_path):
    onnx_dir = make_onnx_export(tmp_path)
    make_engine_set(onnx_dir, fingerprint_of(JETSON_ORIN_NANO, JETSON_INSTALLED))
    report = doctor_report(JETSON_ORIN_NANO, NOTHING_INSTALLED, ArtifactStore(tmp_path))
    print(report.text)
    assert not report.usable and "NOTHING USABLE" in report.text
    assert "NOT usable: TensorRT or a CUDA GPU is not available here" in report.text
    assert "rebuild: sam2edge build" in report.text


@pytest.fixture
def real_store(exported_graphs):
    return exported_graphs.parents[1]


def test_build_print_trtexec(real_store, capsys):
    assert main(["build", "sam2.1_hiera_tiny", "--store", str(real_store), "--print-trtexec",
                 "--artifacts", "memory_encoder", "prompt_decoder", "--max-batch", "4"]) == 0
    out = capsys.readouterr().out
    print(out[:1500])
    lines = [line for line in out.splitlines() if line.startswith("trtexec")]
    assert len(lines) == 2 and "prompt_decoder.onnx" in lines[0] and "memory_encoder.onnx" in lines[1]
    assert "--fp16" in lines[0] and "--layerPrecisions=" in lines[0]
    assert "mask_logits:4x1x1024x1024" in lines[1]  # --max-batch bounds num_objects


def test_build_without_tensorrt_fails_clearly(real_store, capsys):
    assert main(["build", "sam2.1_hiera_tiny", "--store", str(real_store), "--artifacts", "prompt_decoder"]) == 1
    err = capsys.readouterr().err
    print(err)
    assert "tensorrt" in err and "pip install" in err


def test_build_unknown_model(tmp_path, capsys):
    assert main(["build", "sam2.1_hiera_large", "--engines", str(tmp_path)]) == 1
    assert "sam2edge export" in capsys.readouterr().err


def test_doctor_with_a_real_export(real_store, capsys):
    assert main(["doctor", "--engines", str(real_store)]) == 0
    out = capsys.readouterr().out
    print(out)
    assert "sam2.1_hiera_tiny-e0e0e0e0: ONNX export" in out
    assert "auto backend for sam2.1_hiera_tiny (batch 1): onnxruntime-cpu on cpu" in out
