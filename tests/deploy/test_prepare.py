"""docker/prepare.py, the appliance's first start, on recorded machines (no GPU, no Docker needed).

Engines are built on the first start on a GPU and kept in the store; later starts reuse them; an engine set
built for another board is not used (and a new one is built beside it); a machine without GPU or TensorRT
serves with ONNX Runtime. The export is found by the checkpoint a variant name stands for.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import pytest

from sam2edge.engines.store import ArtifactStore, EngineSet
from tests.deploy.conftest import REPO
from tests.engines.recorded import (
    JETSON_INSTALLED,
    JETSON_ORIN_NANO,
    NOTHING_INSTALLED,
    RTX_FREE,
    RTX_INSTALLED,
    fingerprint_of,
    make_engine_set,
    make_onnx_export,
)


@pytest.fixture(scope="module")
def prepare():
    spec = importlib.util.spec_from_file_location("sam2edge_prepare", REPO / "docker" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sam2edge_prepare"] = module
    spec.loader.exec_module(module)
    return module


class Builds:
    """Stands in for build_engines: records the call and writes an engine set as the real build would."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, onnx, *, store, precision, say, described):
        self.calls.append({"precision": precision, "described": described})
        fp = fingerprint_of(*described)
        return EngineSet(make_engine_set(onnx.dir, fp, precision), {})


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    make_onnx_export(tmp_path / "store")
    return ArtifactStore(tmp_path / "store")


def test_first_start_builds_then_later_starts_reuse(prepare, store):
    onnx, log, build = store.onnx_sets()[0], [], Builds()
    machine = (JETSON_ORIN_NANO, JETSON_INSTALLED)
    first = prepare.ensure_engines(store, onnx, "fp16", log=log.append, described=machine, build=build)
    assert len(build.calls) == 1 and build.calls[0]["described"] == machine
    assert any("engines: none for this GPU (orin-sm87-trt10.3.0-cuda12-l4t36.4.3) yet: building fp16" in m for m in log), log
    log.clear()
    again = prepare.ensure_engines(store, onnx, "fp16", log=log.append, described=machine, build=build)
    assert len(build.calls) == 1, "a second start must not build again"
    assert again.dir == first.dir and any(m.startswith(f"engines: reusing {first.dir}") for m in log), log


def test_engines_of_another_board_are_not_used_and_new_ones_are_built(prepare, store):
    onnx, log, build = store.onnx_sets()[0], [], Builds()
    other = make_engine_set(onnx.dir, fingerprint_of(RTX_FREE, RTX_INSTALLED), "fp16")
    made = prepare.ensure_engines(store, onnx, "fp16", log=log.append, described=(JETSON_ORIN_NANO, JETSON_INSTALLED),
                                  build=build)
    assert len(build.calls) == 1 and made.dir != other and other.is_dir()
    assert any(m.startswith(f"engines: not using {other}: built for another machine") for m in log), log


def test_another_precision_is_built_beside(prepare, store):
    onnx, build = store.onnx_sets()[0], Builds()
    make_engine_set(onnx.dir, fingerprint_of(JETSON_ORIN_NANO, JETSON_INSTALLED), "fp32")
    prepare.ensure_engines(store, onnx, "fp16", log=lambda m: None, described=(JETSON_ORIN_NANO, JETSON_INSTALLED), build=build)
    assert [c["precision"] for c in build.calls] == ["fp16"]


def test_without_gpu_or_tensorrt_it_serves_with_onnxruntime_or_fails_when_required(prepare, store):
    onnx, log, build = store.onnx_sets()[0], [], Builds()
    cpu_only = (dataclasses.replace(RTX_FREE, gpus=(), notes=("no CUDA driver: libcuda.so.1 not loadable",)), NOTHING_INSTALLED)
    assert prepare.ensure_engines(store, onnx, log=log.append, described=cpu_only, build=build) is None
    assert build.calls == [] and "no CUDA GPU visible (no CUDA driver" in log[-1] and "ONNX Runtime" in log[-1]
    assert "TensorRT Python bindings are not importable" in log[-1]
    with pytest.raises(prepare.PrepareError, match="SAM2EDGE_ENGINES_MODE=require"):
        prepare.ensure_engines(store, onnx, mode="require", log=log.append, described=cpu_only, build=build)
    assert prepare.ensure_engines(store, onnx, mode="off", log=log.append, described=(RTX_FREE, RTX_INSTALLED), build=build) is None
    assert build.calls == []


def test_a_failed_build_falls_back_unless_engines_are_required(prepare, store):
    from sam2edge.errors import EngineBuildError

    def failing(*args, **kwargs):
        raise EngineBuildError("out of memory in the builder")

    onnx, log = store.onnx_sets()[0], []
    machine = (JETSON_ORIN_NANO, JETSON_INSTALLED)
    assert prepare.ensure_engines(store, onnx, log=log.append, described=machine, build=failing) is None
    assert "build failed (out of memory in the builder); serving with ONNX Runtime" in log[-1]
    with pytest.raises(prepare.PrepareError, match="out of memory"):
        prepare.ensure_engines(store, onnx, mode="require", log=log.append, described=machine, build=failing)


def test_a_variant_name_finds_the_export_of_its_checkpoint(prepare, tmp_path, monkeypatch):
    import hashlib

    from sam2edge.config import get_config

    official = get_config("sam2.1_hiera_tiny").sha256
    fine_tuned = b"a fine-tuned checkpoint"  # hashed, never loaded: the export is looked up by sha256
    make_onnx_export(tmp_path / "store", ckpt=official)
    make_onnx_export(tmp_path / "store", ckpt=hashlib.sha256(fine_tuned).hexdigest())
    store, log = ArtifactStore(tmp_path / "store"), []
    monkeypatch.delenv("SAM2EDGE_MODELS_DIR", raising=False)
    assert prepare.find_export(store, "sam2.1_hiera_tiny", log=log.append).checkpoint_sha256 == official
    models = tmp_path / "models"
    models.mkdir()
    (models / "sam2.1_hiera_tiny.pt").write_bytes(fine_tuned)
    monkeypatch.setenv("SAM2EDGE_MODELS_DIR", str(models))
    found = prepare.find_export(store, "sam2.1_hiera_tiny", log=log.append)
    assert found.checkpoint_sha256 == hashlib.sha256(fine_tuned).hexdigest(), log


def test_no_export_and_no_exporter_says_how_to_make_one(prepare, tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path / "empty")
    monkeypatch.setattr(prepare.lazy, "available", lambda module: module != "torch")
    with pytest.raises(prepare.PrepareError, match=r"no exporter \(PyTorch\).*sam2edge export sam2.1_hiera_tiny --store DIR"):
        prepare.find_export(store, "sam2.1_hiera_tiny", log=lambda m: None)
    with pytest.raises(prepare.PrepareError, match="neither an export folder"):
        prepare.find_export(store, "not-a-model", log=lambda m: None)
