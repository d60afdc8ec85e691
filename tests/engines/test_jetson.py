"""Jetson specifics over recorded machines: unified memory, module identity, containers without L4T files.

* The GPU allocates from the same RAM as the CPU, so the usable budget is min(driver free, MemAvailable)
  minus the headroom, and a TensorRT engine needs its plan bytes in host RAM while it deserializes
  (the weights twice at the peak).
* Every Orin module reports the GPU name "Orin": the SM count tells an Orin Nano (8) from an AGX Orin
  (16), whose engines are not interchangeable.
* A container without /etc/nv_tegra_release does not know its L4T release: that alone must not make
  engines built on the host look foreign.
"""

from __future__ import annotations

import dataclasses

from sam2edge.engines.fingerprint import DeviceDescription, EngineFingerprint
from sam2edge.runtime import estimate
from sam2edge.runtime.selection import EngineOption, Request, Sources, decide
from tests.engines.recorded import JETSON_INSTALLED, JETSON_ORIN_NANO, fingerprint_of

MiB = 2**20


def _with_sms(device: DeviceDescription, sms: int | None) -> DeviceDescription:
    return dataclasses.replace(device, gpus=(dataclasses.replace(device.gpus[0], multiprocessors=sms),))


def test_usable_memory_is_the_smaller_of_driver_free_and_mem_available():
    gpu = JETSON_ORIN_NANO.gpus[0]
    free, how = JETSON_ORIN_NANO.usable_free_bytes(gpu)
    assert free == JETSON_ORIN_NANO.mem_available_bytes < gpu.free_bytes
    assert "MemAvailable" in how


def test_an_engine_needs_its_plan_bytes_twice_on_unified_memory():
    plain, _ = estimate.tensorrt_need(200 * MiB, 80 * MiB, 10 * MiB, "sam2.1_hiera_tiny", 1)
    unified, source = estimate.tensorrt_need(200 * MiB, 80 * MiB, 10 * MiB, "sam2.1_hiera_tiny", 1, unified=True)
    assert unified - plain == 80 * MiB and "unified memory" in source
    engines = (EngineOption("fp16", "/e", device_memory_bytes=200 * MiB, weights_bytes=80 * MiB, io_bytes=10 * MiB),)
    d = decide(JETSON_ORIN_NANO, JETSON_INSTALLED, Sources("sam2.1_hiera_tiny", engines=engines), Request())
    trt = next(c for c in d.candidates if c.backend == "tensorrt")
    assert trt.admitted and trt.need_bytes == unified and "plan bytes" in trt.reason


def test_the_sm_count_tells_orin_modules_apart():
    nano = fingerprint_of(_with_sms(JETSON_ORIN_NANO, 8), JETSON_INSTALLED)
    agx = fingerprint_of(_with_sms(JETSON_ORIN_NANO, 16), JETSON_INSTALLED)
    assert nano.gpu_name == agx.gpu_name == "Orin"
    assert nano.mismatches(agx) == ["multiprocessors: engine 8, here 16"]
    assert nano.slug() != agx.slug() and "-8sm" in nano.slug()
    recorded_before = EngineFingerprint.from_dict({k: v for k, v in nano.to_dict().items() if k != "multiprocessors"})
    assert recorded_before.mismatches(agx) == []  # engines recorded before the SM count was probed still run


def test_a_container_without_l4t_files_accepts_host_engines():
    host = fingerprint_of(JETSON_ORIN_NANO, JETSON_INSTALLED)
    container = fingerprint_of(dataclasses.replace(JETSON_ORIN_NANO, jetson=None), JETSON_INSTALLED)
    assert host.l4t == "36.4.3" and container.l4t is None
    assert host.mismatches(container) == [] and container.mismatches(host) == []
    other_release = dataclasses.replace(host, l4t="36.3.0")
    assert host.mismatches(other_release) == ["l4t: engine 36.4.3, here 36.3.0"]
