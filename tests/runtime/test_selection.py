"""Backend selection as pure decisions: this machine, and recorded Jetson / RTX / stale-engine machines."""

from __future__ import annotations

import pytest

from sam2edge.backends.registry import ORDER as BACKEND_ORDER
from sam2edge.engines.fingerprint import probe_device, probe_installed
from sam2edge.engines.store import ArtifactStore
from sam2edge.runtime.fallback import gather_sources
from sam2edge.runtime.selection import EngineOption, Request, Sources, decide
from tests.engines.recorded import (
    JETSON_INSTALLED,
    JETSON_ORIN_NANO,
    NOTHING_INSTALLED,
    RTX_BUSY,
    RTX_FREE,
    RTX_INSTALLED,
    MiB,
    fingerprint_of,
    make_engine_set,
    make_onnx_export,
)


def engines(precision="fp16", problems=(), device_memory=200 * MiB, batch_max=8):
    return EngineOption(precision, f"/store/m/tensorrt/{precision}/slug", tuple(problems), device_memory,
                        weights_bytes=80 * MiB, io_bytes=40 * MiB, dims_max={"batch": batch_max},
                        rebuild_command=f"sam2edge build /store/m/onnx --precision {precision}")


def sources(variant="sam2.1_hiera_tiny", onnx_mib=155, engine_sets=(), torch_weights=True):
    return Sources(variant, torch_weights, "/store/m/onnx", onnx_mib * MiB, tuple(engine_sets))


def by_backend(decision):
    return {c.backend: c for c in decision.candidates}


def test_this_machine_picks_cpu_and_explains_gpu_exclusions():
    d = decide(probe_device(), probe_installed(), sources(), Request())
    print(d.format())
    assert [c.backend for c in d.candidates] == list(BACKEND_ORDER)
    assert d.chosen.backend == "onnxruntime-cpu"
    c = by_backend(d)
    for gpu in ("tensorrt", "onnxruntime-cuda", "torch-cuda"):
        assert not c[gpu].admitted and "no CUDA GPU" in c[gpu].reason and "libcuda" in c[gpu].reason
    assert c["torch-cpu"].admitted and "MemAvailable" in c["torch-cpu"].reason


def test_this_machine_strict_tensorrt_has_nothing():
    d = decide(probe_device(), probe_installed(), sources(engine_sets=[engines()]), Request(backend="tensorrt", strict=True))
    print(d.format())
    assert d.chosen is None
    assert all("not requested" in c.reason for c in d.candidates if c.backend != "tensorrt")


def test_jetson_orin_nano_tiny_runs_tensorrt_and_large_is_memory_bound():
    tiny = decide(JETSON_ORIN_NANO, JETSON_INSTALLED, sources(engine_sets=[engines()]), Request())
    print(tiny.format())
    assert tiny.chosen.backend == "tensorrt" and tiny.chosen.precision == "fp16"
    assert "min(cuda free" in tiny.chosen.reason and "engine manifest" in tiny.chosen.reason
    # large without engines: the 3.2 GiB MemAvailable (not the driver's 5.5 GiB) decides.
    large = decide(JETSON_ORIN_NANO, JETSON_INSTALLED, sources("sam2.1_hiera_large", onnx_mib=900), Request())
    print(large.format())
    c = by_backend(large)
    assert "no TensorRT engines" in c["tensorrt"].reason
    for gpu in ("onnxruntime-cuda", "torch-cuda"):
        assert not c[gpu].admitted and "does not fit in min(cuda free" in c[gpu].reason
        assert c[gpu].free_bytes == JETSON_ORIN_NANO.mem_available_bytes
    assert large.chosen.backend == "onnxruntime-cpu" and large.chosen.reason.startswith("needs")
    # Two images at once fit nowhere in 3.2 GiB: nothing is admitted, every reason says so.
    batch2 = decide(JETSON_ORIN_NANO, JETSON_INSTALLED, sources("sam2.1_hiera_large", onnx_mib=900), Request(batch=2))
    print(batch2.format())
    assert batch2.chosen is None
    assert all("does not fit" in c.reason for c in batch2.candidates if c.backend != "tensorrt")


def test_rtx_with_little_free_memory_falls_to_cpu_with_reasons():
    d = decide(RTX_BUSY, RTX_INSTALLED, sources(engine_sets=[engines(device_memory=700 * MiB)]), Request())
    print(d.format())
    c = by_backend(d)
    for gpu in ("tensorrt", "onnxruntime-cuda", "torch-cuda"):
        assert not c[gpu].admitted and "does not fit in cuda free 900 MiB" in c[gpu].reason
    assert d.chosen.backend == "onnxruntime-cpu"
    # The same box with its memory free takes TensorRT; the free figure is the only difference.
    assert decide(RTX_FREE, RTX_INSTALLED, sources(engine_sets=[engines(device_memory=700 * MiB)]),
                  Request()).chosen.backend == "tensorrt"


def test_stale_engine_is_skipped_with_rebuild_command():
    stale = engines(problems=["stale: image_encoder.engine was built from another image_encoder.onnx"])
    d = decide(RTX_FREE, RTX_INSTALLED, sources(engine_sets=[stale]), Request())
    print(d.format())
    c = by_backend(d)
    assert not c["tensorrt"].admitted
    assert "stale" in c["tensorrt"].reason and "rebuild: sam2edge build /store/m/onnx --precision fp16" in c["tensorrt"].reason
    assert d.chosen.backend == "onnxruntime-cuda"


def test_stale_engine_from_a_real_store(tmp_path):
    """Store -> sources -> decision: engines for another TensorRT version are refused, ORT CUDA chosen."""
    onnx_dir = make_onnx_export(tmp_path)
    old = fingerprint_of(RTX_FREE, RTX_INSTALLED.__class__.from_dict({**RTX_INSTALLED.to_dict(), "tensorrt": "10.3.0"}))
    make_engine_set(onnx_dir, old)
    store = ArtifactStore(tmp_path)
    src = gather_sources("sam2.1_hiera_tiny", store, store.find_onnx("sam2.1_hiera_tiny"), RTX_FREE, RTX_INSTALLED, True)
    d = decide(RTX_FREE, RTX_INSTALLED, src, Request())
    print(d.format())
    assert "tensorrt: engine 10.3.0, here 10.8.0" in by_backend(d)["tensorrt"].reason
    assert d.chosen.backend == "onnxruntime-cuda"
    make_engine_set(onnx_dir, fingerprint_of(RTX_FREE, RTX_INSTALLED))  # rebuilt for this machine
    src = gather_sources("sam2.1_hiera_tiny", store, store.find_onnx("sam2.1_hiera_tiny"), RTX_FREE, RTX_INSTALLED, True)
    assert decide(RTX_FREE, RTX_INSTALLED, src, Request()).chosen.backend == "tensorrt"


def test_batch_beyond_engine_profile_is_excluded():
    d = decide(RTX_FREE, RTX_INSTALLED, sources(engine_sets=[engines(batch_max=4)]), Request(batch=6))
    assert "rebuild with --max-batch 6" in by_backend(d)["tensorrt"].reason
    assert d.chosen.backend == "onnxruntime-cuda"


def test_precision_preference_and_request():
    sets = [engines("fp32"), engines("fp16")]
    assert decide(RTX_FREE, RTX_INSTALLED, sources(engine_sets=sets), Request()).chosen.precision == "fp16"
    assert decide(RTX_FREE, RTX_INSTALLED, sources(engine_sets=sets), Request(precision="fp32")).chosen.precision == "fp32"
    d = decide(RTX_FREE, RTX_INSTALLED, sources(engine_sets=sets), Request(precision="bf16"))
    assert "no bf16 engines" in by_backend(d)["tensorrt"].reason


def test_requested_backend_goes_first_and_others_are_fallbacks():
    d = decide(RTX_FREE, RTX_INSTALLED, sources(engine_sets=[engines()]), Request(backend="torch"))
    assert [c.backend for c in d.admitted][:2] == ["torch-cuda", "torch-cpu"]
    assert d.admitted[2].backend == "tensorrt" and d.admitted[2].reason.startswith("fallback:")
    cpu = decide(RTX_FREE, RTX_INSTALLED, sources(engine_sets=[engines()]), Request(device="cpu", strict=True))
    assert [c.backend for c in cpu.admitted] == ["onnxruntime-cpu", "torch-cpu"]


def test_nothing_installed_nothing_usable():
    d = decide(JETSON_ORIN_NANO, NOTHING_INSTALLED, sources(), Request())
    print(d.format())
    assert d.chosen is None
    assert "tensorrt is not installed" in by_backend(d)["tensorrt"].reason
    assert "torch is not installed" in by_backend(d)["torch-cpu"].reason


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        decide(RTX_FREE, RTX_INSTALLED, sources(), Request(backend="openvino"))
