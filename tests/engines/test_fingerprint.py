"""Fingerprints and machine probes: this machine for real, Jetson files from a recorded tree."""

from __future__ import annotations

import json

import pytest

from sam2edge.engines import probes
from sam2edge.engines.fingerprint import (
    DeviceDescription,
    EngineFingerprint,
    engine_fingerprint,
    probe_device,
    probe_installed,
    probe_jetson,
)
from tests.engines.recorded import JETSON_INSTALLED, JETSON_ORIN_NANO, RTX_BUSY, RTX_INSTALLED

NV_TEGRA_RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n"


def test_probe_this_machine_has_no_gpu_and_says_why():
    d = probe_device()
    print("this machine:", d.to_dict())
    assert d.gpus == ()
    assert any("CUDA driver" in n for n in d.notes)
    assert d.mem_total_bytes and d.mem_available_bytes and 0 < d.mem_available_bytes <= d.mem_total_bytes
    assert d.jetson is None


def test_probe_installed_reports_real_versions_and_providers():
    import onnxruntime
    import torch

    inst = probe_installed()
    print("installed:", inst.to_dict())
    assert inst.onnxruntime == onnxruntime.__version__
    assert "CPUExecutionProvider" in inst.ort_providers
    assert "CUDAExecutionProvider" not in inst.ort_providers
    assert inst.torch == torch.__version__ and inst.torch_cuda is None
    assert inst.tensorrt is None
    assert engine_fingerprint(probe_device(), inst) is None


def test_jetson_probe_from_recorded_files(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(NV_TEGRA_RELEASE)
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Engineering Reference Developer Kit\x00")
    (tmp_path / "var/lib/nvpmodel").mkdir(parents=True)
    (tmp_path / "var/lib/nvpmodel/status").write_text("pmode:0001 fmode:quiet\n")
    (tmp_path / "proc/meminfo").write_text("MemTotal:        7619944 kB\nMemFree:  1000 kB\nMemAvailable:    3355444 kB\n")
    j = probe_jetson(tmp_path)
    assert j is not None
    assert j.l4t_release == "36.4.3" and j.jetpack == "6.2"
    assert j.model.startswith("NVIDIA Jetson Orin Nano") and "\x00" not in j.model
    assert j.power_mode == "mode 1"
    assert probes.meminfo(tmp_path / "proc/meminfo") == (7619944 * 1024, 3355444 * 1024)
    assert probe_jetson(tmp_path / "nothing") is None


@pytest.mark.parametrize("release,jetpack", [("36.4.3", "6.2"), ("36.4.0", "6.1"), ("35.4.1", "5.1.2"), ("32.7.4", None)])
def test_jetpack_mapping(release, jetpack):
    assert probes.jetpack_for_l4t(release) == jetpack


def test_jetson_free_memory_is_min_of_driver_and_memavailable():
    gpu = JETSON_ORIN_NANO.gpus[0]
    free, how = JETSON_ORIN_NANO.usable_free_bytes(gpu)
    assert free == min(gpu.free_bytes, JETSON_ORIN_NANO.mem_available_bytes) == JETSON_ORIN_NANO.mem_available_bytes
    assert "MemAvailable" in how
    rtx = RTX_BUSY.gpus[0]
    assert RTX_BUSY.usable_free_bytes(rtx)[0] == rtx.free_bytes  # discrete: the driver's figure


def test_description_round_trips_through_json():
    for d in (JETSON_ORIN_NANO, RTX_BUSY):
        assert DeviceDescription.from_dict(json.loads(json.dumps(d.to_dict()))) == d


def test_fingerprint_slug_and_mismatches():
    jet = engine_fingerprint(JETSON_ORIN_NANO, JETSON_INSTALLED)
    rtx = engine_fingerprint(RTX_BUSY, RTX_INSTALLED)
    assert jet.slug() == "orin-sm87-trt10.3.0-cuda12-l4t36.4.3"
    assert rtx.slug() == "nvidia-geforce-rtx-4090-sm89-trt10.8.0-cuda12"
    diffs = jet.mismatches(rtx)
    # l4t is compared only when both sides know it (a container may not): the GPU fields differ anyway.
    assert {d.split(":")[0] for d in diffs} == {"gpu_name", "compute_capability", "tensorrt"}
    # CUDA minor versions are compatible, majors are not.
    assert EngineFingerprint("g", "8.9", "10.8.0", "12.4").mismatches(EngineFingerprint("g", "8.9", "10.8.0", "12.8")) == []
    assert EngineFingerprint("g", "8.9", "10.8.0", "12.4").mismatches(EngineFingerprint("g", "8.9", "10.8.0", "13.0"))
    assert EngineFingerprint.from_dict(jet.to_dict()) == jet
