"""Scale-out fixtures: a placeholder export set (configs and hashes, no real networks), a real tritonserver
serving the session's tiny export through the Python backend, and a small local Ray cluster."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.contract.manifest import spec_to_dict, write_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = "cd" * 32


def make_fake_export(store: Path, variant: str = "sam2.1_hiera_tiny") -> Path:
    """``<store>/<variant>-cdcdcdcd/onnx`` with placeholder bytes per artifact and a manifest in the export's format."""
    onnx_dir = store / f"{variant}-{CHECKPOINT[:8]}" / "onnx"
    onnx_dir.mkdir(parents=True)
    files, artifacts = {}, {}
    for i, name in enumerate(ARTIFACTS):
        data = bytes([i + 1]) * (1000 + i)
        (onnx_dir / f"{name}.onnx").write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        files[f"{name}.onnx"] = {"sha256": sha, "size": len(data)}
        artifacts[name] = {"file": f"{name}.onnx", "sha256": sha, "size": len(data), "spec": spec_to_dict(ARTIFACTS[name])}
    write_manifest(onnx_dir, {"format": "sam2edge-onnx/1", "variant": variant, "checkpoint_sha256": CHECKPOINT,
                              "host_constants": {"no_obj_ptr": [0.25, -0.5]}, "artifacts": artifacts, "files": files})
    return onnx_dir


@pytest.fixture
def fake_export(tmp_path: Path) -> Path:
    return make_fake_export(tmp_path / "store")


@pytest.fixture(scope="module")
def triton_served(tiny_export, tmp_path_factory):
    """The tiny export as a Python-platform repository, served by tritonserver on 127.0.0.1: (url, server).
    Stopped after the module (its four model processes hold ONNX Runtime sessions)."""
    pytest.importorskip("tritonclient.grpc", reason="the Triton runner needs tritonclient[grpc] (requirements/ci.txt)")
    from sam2edge.contract.serving import default_prefix, model_name
    from sam2edge.scale.triton_config import Serving
    from sam2edge.scale.triton_repo import write_repository
    from tests.scale.triton_server import server_dir, start_triton, venv_dir

    if server_dir(venv_dir()) is None:
        pytest.skip(f"no tritonserver venv in {venv_dir()}: run scripts/triton_venv.sh (.ci/run does)")
    tmp = tmp_path_factory.mktemp("triton")
    t0 = time.perf_counter()
    written = write_repository(tiny_export.onnx_dir, tmp / "repo", "python", Serving(kind="cpu"), threads=2)
    prefix = default_prefix(tiny_export.manifest["variant"])
    server = start_triton(tmp / "repo", tmp / "tritonserver.log", models=tuple(model_name(prefix, w.artifact) for w in written))
    print(f"repository written + tritonserver ready in {time.perf_counter() - t0:.1f} s (server {server.started_s:.1f} s)")
    yield server.url(prefix), server
    server.stop()


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster as the issue sizes it: 2 CPUs, a 256 MB object store, no dashboard, no usage stats.
    Workers import this checkout's sam2edge and run ONNX Runtime with one thread each. Shut down after the
    module: idle workers must not hold memory while the rest of the suite runs."""
    pytest.importorskip("ray", reason="Ray labelling needs ray[data] (requirements/ci.txt)")
    pytest.importorskip("pycocotools", reason="the COCO RLE masks need pycocotools")
    import ray

    from sam2edge.scale.ray_label import Cluster

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    t0 = time.perf_counter()
    env = {"env_vars": {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}}
    Cluster(num_cpus=2, object_store_mb=256, runtime_env=env).connect()
    print(f"ray cluster up in {time.perf_counter() - t0:.1f} s")
    yield ray
    ray.shutdown()
