"""Backends for real on this machine: load-time choice, run-time fallback on typed errors, strict mode."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from sam2edge.backends.base import Runner
from sam2edge.engines.fingerprint import probe_device, probe_installed
from sam2edge.engines.store import ArtifactStore
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError
from sam2edge.runtime.fallback import BackendSet, RunnerFactory, open_backends
from sam2edge.runtime.selection import Request, Sources, decide

torch = pytest.importorskip("torch", reason="the PyTorch backend is the real runner these tests fall back to")
ARTS = ("image_encoder", "prompt_decoder")


@pytest.fixture(scope="module")
def tiny_model():
    from sam2edge.model import build_model
    from sam2edge.model.testing import randomize_parameters

    torch.set_num_threads(2)
    model = build_model("sam2.1_hiera_tiny").eval()
    randomize_parameters(model, 0)
    return model


def decoder_feeds():
    from sam2edge.contract.artifacts import ARTIFACTS

    feeds = ARTIFACTS["prompt_decoder"].dummy_inputs("opt", seed=3)
    feeds["has_mask_input"][:] = 0.0
    feeds["point_labels"][:] = 1
    return feeds


def test_auto_on_this_machine_runs_pytorch_cpu(tmp_path, tiny_model):
    bs = open_backends("sam2.1_hiera_tiny", store_root=str(tmp_path), torch_loader=lambda dev: tiny_model,
                       artifacts=ARTS)
    report = bs.backend_report()
    print(bs.decision.format())
    assert bs.active_backend == "torch-cpu" and report["active"] == "torch-cpu"
    reasons = {c["backend"]: c["reason"] for c in report["candidates"]}
    assert "no CUDA GPU" in reasons["tensorrt"] and "no CUDA GPU" in reasons["torch-cuda"]
    assert "no ONNX export" in reasons["onnxruntime-cpu"]
    out = bs.runners["prompt_decoder"].infer(decoder_feeds())
    assert out["masks"].shape == (1, 4, 256, 256) and np.isfinite(out["masks"]).all()
    assert bs.runners["prompt_decoder"].backend == "torch-cpu"


def test_strict_tensorrt_fails_clearly(tmp_path, tiny_model):
    with pytest.raises(BackendUnavailableError) as info:
        open_backends("sam2.1_hiera_tiny", backend="tensorrt", strict=True, store_root=str(tmp_path),
                      torch_loader=lambda dev: tiny_model)
    msg = str(info.value)
    print(msg)
    assert "backend='tensorrt'" in msg and "strict=True" in msg and "no CUDA GPU" in msg
    assert "not requested" in msg


def test_non_strict_tensorrt_request_falls_back_with_reason(tmp_path, tiny_model, caplog):
    with caplog.at_level(logging.INFO, logger="sam2edge.backends"):
        bs = open_backends("sam2.1_hiera_tiny", backend="tensorrt", store_root=str(tmp_path),
                           torch_loader=lambda dev: tiny_model, artifacts=ARTS)
    assert bs.active_backend == "torch-cpu"
    assert bs.decision.chosen.reason.startswith("fallback:")
    assert "tensorrt" in caplog.text and "no CUDA GPU" in caplog.text


class OutOfMemoryRunner(Runner):
    """A runner on our contract whose device runs out of memory on every call."""

    backend = "onnxruntime-cpu"

    def _infer_impl(self, feeds):
        self.calls = getattr(self, "calls", 0) + 1
        raise BackendRuntimeError("onnxruntime: Failed to allocate memory for requested buffer of size 268435456")


def two_candidates():
    src = Sources("sam2.1_hiera_tiny", torch_weights=True, onnx_dir="/unused", onnx_bytes=155 << 20)
    decision = decide(probe_device(), probe_installed(check_providers=False), src, Request())
    assert [c.backend for c in decision.admitted] == ["onnxruntime-cpu", "torch-cpu"]
    return decision


def make_factory(tiny_model, failing):
    from sam2edge.contract.artifacts import ARTIFACTS

    real = RunnerFactory(ArtifactStore("/nonexistent"), None, ARTS, torch_loader=lambda dev: tiny_model)

    def factory(cand):
        if cand.backend == "onnxruntime-cpu":
            runners = {n: OutOfMemoryRunner(ARTIFACTS[n]) for n in ARTS}
            failing.update(runners)
            return runners
        return real(cand)

    return factory


def test_runtime_out_of_memory_falls_back_and_retries(tiny_model, caplog):
    failing: dict = {}
    bs = BackendSet(two_candidates(), make_factory(tiny_model, failing), ARTS)
    assert bs.active_backend == "onnxruntime-cpu"
    with caplog.at_level(logging.WARNING, logger="sam2edge.backends"):
        out = bs.runners["prompt_decoder"].infer(decoder_feeds())
    assert out["masks"].shape == (1, 4, 256, 256)
    assert bs.active_backend == "torch-cpu"
    assert failing["prompt_decoder"].calls == 1 and not failing["prompt_decoder"].is_active  # released
    (event,) = bs.backend_report()["events"]
    assert event["backend"] == "onnxruntime-cpu" and event["stage"] == "run" and "allocate memory" in event["reason"]
    assert "falling back to torch-cpu" in caplog.text


def test_strict_raises_the_runtime_error(tiny_model):
    bs = BackendSet(two_candidates(), make_factory(tiny_model, {}), ARTS, strict=True)
    with pytest.raises(BackendRuntimeError, match="allocate memory"):
        bs.runners["prompt_decoder"].infer(decoder_feeds())
    assert bs.active_backend == "onnxruntime-cpu"


def test_untyped_errors_do_not_fall_back(tiny_model):
    bs = open_backends("sam2.1_hiera_tiny", store_root="/nonexistent", torch_loader=lambda dev: tiny_model,
                       artifacts=ARTS)
    feeds = decoder_feeds()
    feeds["point_coords"] = feeds["point_coords"].astype(np.float64)
    from sam2edge.errors import InputError

    with pytest.raises(InputError, match="point_coords"):
        bs.runners["prompt_decoder"].infer(feeds)
    assert bs.backend_report()["events"] == []


def test_load_failure_falls_back_at_load_time(tiny_model, tmp_path):
    """onnxruntime-cpu is admitted but its runners cannot load (the ONNX files are damaged)."""
    from tests.engines.recorded import make_onnx_export

    make_onnx_export(tmp_path)
    store = ArtifactStore(tmp_path)
    real = RunnerFactory(store, store.find_onnx("sam2.1_hiera_tiny"), ARTS, torch_loader=lambda dev: tiny_model)
    bs = BackendSet(two_candidates(), real, ARTS)
    assert bs.active_backend == "torch-cpu"
    (event,) = bs.backend_report()["events"]
    print(event)
    assert event["stage"] == "load" and event["backend"] == "onnxruntime-cpu"


def test_real_onnx_export_is_chosen_over_pytorch_and_runs(exported_graphs, tiny_model):
    """A store holding a real export: auto picks onnxruntime-cpu, runs it, and matches PyTorch."""
    root = str(exported_graphs.parents[1])
    bs = open_backends("sam2.1_hiera_tiny", store_root=root, torch_loader=lambda dev: tiny_model,
                       artifacts=("prompt_decoder",))
    print(bs.decision.format())
    assert bs.active_backend == "onnxruntime-cpu" and bs.backend_report()["events"] == []
    feeds = decoder_feeds()
    got = bs.runners["prompt_decoder"].infer(feeds)
    ref = open_backends("sam2.1_hiera_tiny", backend="torch", store_root=root, torch_loader=lambda dev: tiny_model,
                        artifacts=("prompt_decoder",))
    assert ref.active_backend == "torch-cpu"
    want = ref.runners["prompt_decoder"].infer(feeds)
    worst = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    print("onnxruntime vs torch, worst abs diff:", worst)
    assert worst < 1e-3
