"""The whole TensorRT path in CI, for TensorRT 10 and 11 (tests/tensorrt_double): `sam2edge build` (with its
verification) -> selection picks the engines -> inference matches ONNX Runtime -> a CUDA fault at run time
falls back to ONNX Runtime on the CPU; and the GPU self-test's table."""

from __future__ import annotations

import gc
import logging

import numpy as np
import pytest

from sam2edge.cli.main import main
from sam2edge.contract.artifacts import ARTIFACTS, Artifact, Tensor
from sam2edge.runtime.fallback import open_backends

pytest.importorskip("onnx", reason="the doubles parse ONNX graphs")
ort = pytest.importorskip("onnxruntime", reason="the fake engine computes with ONNX Runtime")
PD, ME = Artifact.PROMPT_DECODER, Artifact.MEMORY_ENCODER


def decoder_feeds(n_prompts: int = 2) -> dict[str, np.ndarray]:
    feeds = ARTIFACTS[PD].dummy_inputs("opt", seed=4, overrides={"num_prompts": n_prompts, "num_objects": 1})
    feeds[Tensor.HAS_MASK_INPUT][:] = 0.0
    feeds[Tensor.POINT_LABELS][:] = 1
    feeds[Tensor.POINT_COORDS] = np.abs(feeds[Tensor.POINT_COORDS]) * 300
    return feeds


def test_build_verify_select_infer_and_fall_back(trt_double, store_copy, caplog):
    """fp16: weak typing with the precision policy on TensorRT 10, AutoCast + strong typing on 11 (the fp32
    build and verification are in test_tensorrt_build_doubles.py)."""
    precision = "fp16"
    assert main(["build", "sam2.1_hiera_tiny", "--store", str(store_copy), "--precision", precision,
                 "--artifacts", PD, ME, "--max-prompts", "4"]) == 0
    bs = open_backends("sam2.1_hiera_tiny", store_root=str(store_copy), artifacts=(PD, ME))
    print(bs.decision.format())
    assert bs.active_backend == "tensorrt" and bs.decision.chosen.precision == precision
    feeds = decoder_feeds()
    got = bs.runners[PD].infer(feeds)
    sess = ort.InferenceSession(str(next(store_copy.glob("*/onnx")) / f"{PD}.onnx"), providers=["CPUExecutionProvider"])
    want = dict(zip(ARTIFACTS[PD].output_names, sess.run(None, feeds)))
    worst = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    print(f"TensorRT {trt_double.major} double, {precision}: worst abs diff vs ONNX Runtime {worst:.3g}")
    assert worst < 1e-4
    trt_double.lib.fail_next_execute = "illegal-address"  # found by the next synchronise; the context is then dead
    with caplog.at_level(logging.WARNING):
        again = bs.runners[PD].infer(feeds)
    assert bs.active_backend == "onnxruntime-cpu"
    (event,) = bs.backend_report()["events"]
    print(event)
    assert event["backend"] == "tensorrt" and event["stage"] == "run" and "cudaErrorIllegalAddress" in event["reason"]
    assert max(float(np.abs(again[k] - want[k]).max()) for k in want) < 1e-4
    bs.close()
    gc.collect()
    assert trt_double.gpu.leaks(("engine", "context")) == []  # TensorRT's own memory went with the runners


def test_self_test_prints_a_table_and_fails_on_a_failed_verification(trt_double, store_copy, capsys):
    assert main(["doctor", "--self-test", "--store", str(store_copy), "--precisions", "fp32", "fp16", "--runs", "2",
                 "--artifacts", ME]) == 0
    out = capsys.readouterr().out
    print(out)
    rows = [line for line in out.splitlines() if line.startswith("| ") and "artifact" not in line]
    assert len(rows) == 2 and all("| OK |" in r for r in rows)
    assert f"TensorRT {trt_double.trt.__version__}" in out and "NVIDIA Fake GPU" in out
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == ME and float(cells[8]) > 0 and float(cells[6]) < 1e-4  # median ms, max abs diff
    trt_double.lib.fail_next_execute = "false"
    assert main(["doctor", "--self-test", "--store", str(store_copy), "--precisions", "fp32", "--runs", "1",
                 "--artifacts", ME]) == 1
    failed = capsys.readouterr().out
    print(failed)
    assert "| memory_encoder | fp32 | FAILED: verification" in failed
