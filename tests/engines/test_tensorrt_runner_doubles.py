"""The TensorRT runner against the TensorRT 10 / 11 and CUDA runtime doubles (tests/tensorrt_double):
device binding per thread, teardown on failed activation and on sticky errors, checked return values,
out-of-profile inputs, one logger."""

from __future__ import annotations

import gc
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from sam2edge.backends.registry import RunnerSources, create_runners
from sam2edge.contract.artifacts import ARTIFACTS, Artifact, Tensor
from sam2edge.engines import tensorrt as trtb
from sam2edge.engines.precision import PrecisionPolicy
from sam2edge.errors import BackendRuntimeError, InputError

pytest.importorskip("onnx", reason="the doubles parse ONNX graphs")
ort = pytest.importorskip("onnxruntime", reason="the fake engine computes with ONNX Runtime")
ME = Artifact.MEMORY_ENCODER


def build(exported_graphs, name: str = ME, limits: dict | None = None) -> bytes:
    """A plan from the fake builder through the project's own build function (fp32, no timing cache)."""
    plan, _ = trtb.build_plan(exported_graphs / f"{name}.onnx", trtb.profile_for(ARTIFACTS[name], limits or {}), "fp32",
                              PrecisionPolicy(name, "fp32"), 1 << 30, b"", lambda m: None)
    return plan


def runner_for(plan: bytes, device: str = "cuda:0", name: str = ME):
    sources = RunnerSources(engine_bytes={name: lambda: plan}, engine_label="test-engines")
    return create_runners("tensorrt", sources, device, [name])[name]


def feeds_for(name: str = ME, seed: int = 0) -> dict[str, np.ndarray]:
    feeds = ARTIFACTS[name].dummy_inputs("opt", seed=seed)
    if name == ME:
        feeds[Tensor.IS_MASK_FROM_POINTS][:] = 1.0
    return feeds


def reference(exported_graphs, feeds, name: str = ME) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(exported_graphs / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    return dict(zip(ARTIFACTS[name].output_names, sess.run(None, feeds)))


def in_thread(fn, *args):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def runner_allocations(gpu, owner: str = "cudaMalloc"):
    return [a for a in gpu.leaks((owner,))]


def test_device_index_one_binds_engine_context_buffers_and_every_thread_to_gpu_1(trt_double, exported_graphs):
    """Certain bug 1: on cuda:1 the engine was deserialized on GPU 0 (before the device was made current) and
    only the activating thread ever called cudaSetDevice; TensorRT binds engines and contexts to the calling
    thread's current device."""
    gpu = trt_double.gpu
    plan = build(exported_graphs)
    runner = runner_for(plan, "cuda:1")
    in_thread(runner.activate)  # activated on a worker thread ...
    feeds = feeds_for()
    got = runner.infer(feeds)  # ... used from the main thread, whose current device is still 0
    assert gpu.current_device() == 1
    got2 = in_thread(runner.infer, feeds)  # and from a fresh thread
    want = reference(exported_graphs, feeds)
    worst = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    print(f"TensorRT {trt_double.major} double on cuda:1 vs ONNX Runtime: worst abs diff {worst:.3g}")
    assert worst == 0.0 and all((got2[k] == got[k]).all() for k in got)
    owners = {(a.owner, a.device) for a in gpu.leaks()}
    assert owners == {("engine", 1), ("context", 1), ("cudaMalloc", 1)}, owners
    assert gpu.used(0) == 0
    in_thread(runner.deactivate)
    gc.collect()
    assert gpu.leaks() == [] and gpu.streams == {}


def test_failed_activation_releases_everything(trt_double, exported_graphs):
    """Certain bug 4: an out-of-memory part-way through activation left buffers, stream and context allocated."""
    gpu = trt_double.gpu
    plan = build(exported_graphs)
    runner = runner_for(plan)
    gpu.fail_allocations_after = 4  # engine weights, context memory, two buffers; the third buffer fails
    with pytest.raises(BackendRuntimeError, match="out of device memory"):
        runner.activate()
    gc.collect()
    print("left after a failed activation:", gpu.leaks(), gpu.streams)
    assert not runner.is_active and gpu.leaks() == [] and gpu.streams == {}
    gpu.fail_allocations_after = None
    assert runner.infer(feeds_for())[Tensor.MASKMEM_FEATURES].shape == (1, 64, 64, 64)  # a retry works
    runner.deactivate()


def test_refused_tensor_address_raises_instead_of_running_on_stale_buffers(trt_double, exported_graphs, monkeypatch):
    """Certain bug 5: set_tensor_address results were ignored; a refused address leaves the previous one bound."""
    plan = build(exported_graphs)
    runner = runner_for(plan)
    runner.infer(feeds_for())
    ctx_cls = type(runner.context)
    refuse = Tensor.MASKMEM_FEATURES
    real = ctx_cls.set_tensor_address
    monkeypatch.setattr(ctx_cls, "set_tensor_address", lambda self, name, ptr: False if name == refuse else real(self, name, ptr))
    with pytest.raises(BackendRuntimeError, match=refuse):
        runner.infer(feeds_for(seed=1))
    monkeypatch.undo()
    runner.deactivate()


def test_unaligned_addresses_are_refused_by_the_double(trt_double, exported_graphs):
    """The double refuses what TensorRT refuses: an address that is not 256-byte aligned (and keeps the old one)."""
    plan = build(exported_graphs)
    runner = runner_for(plan)
    runner.activate()
    buf = runner.buffers[Tensor.MASKMEM_FEATURES]
    assert buf.ptr % 256 == 0
    assert runner.context.set_tensor_address(Tensor.MASKMEM_FEATURES, buf.ptr + 4) is False
    assert runner.context.get_tensor_address(Tensor.MASKMEM_FEATURES) in (0, buf.ptr)
    runner.deactivate()


@pytest.mark.parametrize("sticky", [False, True], ids=["transient", "sticky"])
def test_deactivate_frees_in_finally_after_a_cuda_error(trt_double, exported_graphs, sticky, caplog):
    """Certain bug 7: after a CUDA error synchronize raised, nothing was freed and deactivate raised."""
    from tests.tensorrt_double.gpu import CudaError

    gpu = trt_double.gpu
    runner = runner_for(build(exported_graphs))
    runner.infer(feeds_for())
    n_buffers = len(runner.buffers)
    gpu.pending = CudaError.cudaErrorIllegalAddress if sticky else CudaError.cudaErrorInvalidValue
    runner.deactivate()  # must not raise
    gc.collect()
    frees = [c for c in gpu.calls if c[0] == "cudaFree"]
    print(f"{'sticky' if sticky else 'transient'} error: {len(frees)} cudaFree calls, left {gpu.leaks()}")
    assert not runner.is_active and runner.context is None and runner.buffers == {}
    assert len(frees) >= n_buffers and any(c[0] == "cudaStreamDestroy" for c in gpu.calls)
    if not sticky:
        assert gpu.leaks() == [] and gpu.streams == {}
    assert "cudaStreamSynchronize" in caplog.text


def test_out_of_profile_input_is_an_input_error(trt_double, exported_graphs):
    """Likely bug: an input outside the engine's profile is the caller's error (InputError, which does not
    fall back), not a backend failure."""
    name = Artifact.PROMPT_DECODER
    runner = runner_for(build(exported_graphs, name, trtb.limits_from_options(max_prompts=2)), name=name)
    feeds = ARTIFACTS[name].dummy_inputs("opt", seed=0, overrides={"num_prompts": 3, "num_objects": 1})
    with pytest.raises(InputError, match="num_prompts|point_coords") as info:
        runner.infer(feeds)
    print(info.value)
    assert "--max-prompts" in str(info.value)
    runner.deactivate()


def test_one_logger_for_every_builder_and_runtime(trt_double, exported_graphs):
    """Likely bug: a new trt.Logger per builder/runtime makes TensorRT report that the logger differs from the
    one already provided (the global logger keeps the first)."""
    plan = build(exported_graphs)
    for device in ("cuda:0", "cuda:1"):
        runner = runner_for(plan, device)
        runner.infer(feeds_for())
        runner.deactivate()
    assert trt_double.lib.logger_mismatches == 0, trt_double.lib.messages


def test_concurrent_runners_on_two_devices(trt_double, exported_graphs):
    """One runner per device, each used from its own thread at the same time."""
    plan = build(exported_graphs)
    runners = {d: runner_for(plan, f"cuda:{d}") for d in (0, 1)}
    feeds = feeds_for()
    barrier = threading.Barrier(2)

    def work(d: int) -> np.ndarray:
        barrier.wait()
        return runners[d].infer(feeds)[Tensor.MASKMEM_FEATURES]

    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(work, (0, 1)))
    assert (outs[0] == outs[1]).all()
    assert {a.device for a in trt_double.gpu.leaks(("engine",))} == {0, 1}
    for r in runners.values():
        r.deactivate()
