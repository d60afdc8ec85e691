#!/usr/bin/env python3
"""The device self-check (jetson-containers' ``test.py`` convention; ``docker run IMAGE test``).

1. ``sam2edge doctor``: the GPU, memory (on Jetson: shared with the CPU), TensorRT, ONNX Runtime and its
   *working* providers, the store and what ``auto`` would pick.
2. What a GPU image must have: a CUDA GPU, the TensorRT Python bindings and ONNX Runtime's CUDA provider
   (``--cpu-ok``: a CPU-only machine passes, as in CI's stand-in image).
3. When the store holds an export: one segmentation of a synthetic image on the ``auto`` backend, timed.

Exit code 0 when every check passed; the failed checks are listed last.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time


def check_machine(cpu_ok: bool) -> list[str]:
    """What a GPU image must have; with ``cpu_ok`` its absence is printed, not failed."""
    from sam2edge.engines.fingerprint import engine_fingerprint, probe_device, probe_installed

    device, installed = probe_device(), probe_installed(check_providers=True)
    if installed.onnxruntime is None:
        return ["ONNX Runtime is not installed"]
    gpu_missing = []
    if not device.gpus:
        gpu_missing.append("no CUDA GPU visible (run the container with --gpus all, or --runtime nvidia on Jetson)")
    if installed.tensorrt is None:
        gpu_missing.append("the TensorRT Python bindings are not importable")
    if "CUDAExecutionProvider" not in installed.ort_providers:
        gpu_missing.append(f"ONNX Runtime {installed.onnxruntime} has no working CUDA provider "
                           f"({', '.join(installed.ort_providers) or 'none'})")
    fp = engine_fingerprint(device, installed)
    print(f"engine fingerprint: {fp.slug() if fp else 'none'}")
    if cpu_ok:
        for message in gpu_missing:
            print(f"note: {message} (allowed by --cpu-ok)")
        return []
    return gpu_missing


def check_segmentation(store_dir: str | None) -> list[str]:
    import numpy as np

    from sam2edge import SAM2
    from sam2edge.engines.store import ArtifactStore

    models = ArtifactStore(store_dir).onnx_sets()
    if not models:
        print(f"segmentation: skipped (no export in {ArtifactStore(store_dir).root})")
        return []
    onnx = models[0]
    image = np.zeros((480, 640, 3), np.uint8)
    image[120:360, 200:440] = (40, 180, 230)  # a filled rectangle on black
    start = time.perf_counter()
    model = SAM2.from_pretrained(str(onnx.model_dir), store_dir=store_dir)
    loaded = time.perf_counter()
    pred = model.segment_images(image, point_coordinates=np.array([[320, 240]]), point_labels=np.array([1]))[0]
    done = time.perf_counter()
    print(f"segmentation: {onnx.model_dir.name} on {model.active_backend}: load {loaded - start:.1f}s, "
          f"first image {done - loaded:.2f}s, masks {tuple(pred.masks.shape)}, scores {np.round(pred.scores, 3).tolist()}")
    if not np.all(np.isfinite(pred.scores)) or pred.masks.shape[-2:] != image.shape[:2]:
        return [f"segmentation on {model.active_backend} gave non-finite scores or masks of the wrong size"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-ok", action="store_true", default=os.environ.get("SAM2EDGE_TEST_CPU_OK") == "1",
                        help="pass without GPU, TensorRT or ONNX Runtime CUDA (CPU-only machines)")
    parser.add_argument("--store", default=None, help="the artifact store (default $SAM2EDGE_STORE)")
    args = parser.parse_args()
    import sam2edge

    print(f"sam2edge {sam2edge.__version__}, Python {platform.python_version()} on {platform.machine()}")
    doctor = subprocess.run([sys.executable, "-m", "sam2edge", "doctor"] + (["--store", args.store] if args.store else []),
                            check=False)
    failures = [] if doctor.returncode == 0 else [f"sam2edge doctor exited with {doctor.returncode}: nothing can run"]
    failures += check_machine(args.cpu_ok)
    failures += check_segmentation(args.store)
    for failure in failures:
        print(f"FAILED: {failure}")
    print("sam2edge OK" if not failures else f"sam2edge: {len(failures)} check(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
