"""Recorded machine descriptions (as ``sam2edge doctor --json`` prints them) and store helpers.

The numbers are those of real machines of each kind: a Jetson Orin Nano 8 GB developer kit
on JetPack 6.2 (shared memory: the driver's free figure is larger than what the CPU side
leaves available), and a desktop RTX 4090 with most of its memory held by other processes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sam2edge.contract.manifest import write_manifest
from sam2edge.engines.fingerprint import DeviceDescription, EngineFingerprint, Installed
from sam2edge.engines.store import ENGINE_FORMAT, rebuild_command

MiB = 2**20
GiB = 2**30

JETSON_ORIN_NANO = DeviceDescription.from_dict({
    "gpus": [{"index": 0, "name": "Orin", "compute_capability": "8.7", "total_bytes": 7_802_822_656,
              "free_bytes": 5_905_580_032, "integrated": True}],
    "cuda_driver_version": "12.6",
    "jetson": {"model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "l4t_release": "36.4.3",
               "jetpack": "6.2", "power_mode": "15W"},
    "mem_total_bytes": 7_802_822_656,
    "mem_available_bytes": 3_435_973_836,
})
JETSON_INSTALLED = Installed.from_dict({
    "tensorrt": "10.3.0", "onnxruntime": "1.20.0",
    "ort_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "torch": "2.5.0a0+872d972e41.nv24.08", "torch_cuda": "12.6", "cuda_runtime": "12.6", "cuda_python": "12.6.0",
})

RTX_BUSY = DeviceDescription.from_dict({
    "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9",
              "total_bytes": 25_757_220_864, "free_bytes": 900 * MiB, "integrated": False}],
    "cuda_driver_version": "12.8",
    "mem_total_bytes": 64 * GiB,
    "mem_available_bytes": 40 * GiB,
})
RTX_INSTALLED = Installed.from_dict({
    "tensorrt": "10.8.0", "onnxruntime": "1.21.0",
    "ort_providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    "torch": "2.6.0+cu126", "torch_cuda": "12.6", "cuda_runtime": "12.6", "cuda_python": "12.8.0",
})
RTX_FREE = DeviceDescription.from_dict({**RTX_BUSY.to_dict(), "gpus": [
    {**RTX_BUSY.to_dict()["gpus"][0], "free_bytes": 22 * GiB}]})

NOTHING_INSTALLED = Installed()

ARTIFACT_NAMES = ("image_encoder", "prompt_decoder", "memory_attention", "memory_encoder")


def fingerprint_of(device: DeviceDescription, installed: Installed) -> EngineFingerprint:
    from sam2edge.engines.fingerprint import engine_fingerprint

    fp = engine_fingerprint(device, installed)
    assert fp is not None
    return fp


def make_onnx_export(root: Path, variant: str = "sam2.1_hiera_tiny", ckpt: str = "ab" * 32,
                     names: tuple[str, ...] = ARTIFACT_NAMES, size: int = 1000) -> Path:
    """A store model folder with placeholder ONNX files and a manifest in the export's format."""
    onnx_dir = root / f"{variant}-{ckpt[:8]}" / "onnx"
    onnx_dir.mkdir(parents=True)
    files = {}
    for i, name in enumerate(names):
        data = bytes([i]) * size
        (onnx_dir / f"{name}.onnx").write_bytes(data)
        files[f"{name}.onnx"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": size}
    write_manifest(onnx_dir, {"variant": variant, "checkpoint_sha256": ckpt, "files": files})
    return onnx_dir


def make_engine_set(onnx_dir: Path, fp: EngineFingerprint, precision: str = "fp16",
                    names: tuple[str, ...] = ARTIFACT_NAMES, device_memory: int = 64 * MiB,
                    batch_max: int = 8) -> Path:
    """An engine folder + manifest as ``sam2edge build`` writes it (plan bytes are placeholders:
    these tests exercise the checks that run before any deserialization)."""
    from sam2edge.contract.manifest import read_manifest
    from sam2edge.integrity import sha256_file

    onnx_manifest = read_manifest(onnx_dir)
    out = onnx_dir.parent / "tensorrt" / precision / fp.slug()
    out.mkdir(parents=True)
    arts = {}
    for i, name in enumerate(names):
        plan = bytes([100 + i]) * 4096
        (out / f"{name}.engine").write_bytes(plan)
        arts[name] = {"file": f"{name}.engine", "size": len(plan), "sha256": hashlib.sha256(plan).hexdigest(),
                      "onnx_sha256": sha256_file(onnx_dir / f"{name}.onnx"), "device_memory_bytes": device_memory,
                      "io_bytes": 16 * MiB, "dims": {"batch": {"min": 1, "opt": 1, "max": batch_max}}}
    write_manifest(out, {"format": ENGINE_FORMAT, "variant": onnx_manifest["variant"],
                         "checkpoint_sha256": onnx_manifest["checkpoint_sha256"], "precision": precision,
                         "fingerprint": fp.to_dict(), "artifacts": arts,
                         "rebuild_command": rebuild_command(onnx_dir, precision, {"max_batch": batch_max})})
    return out
