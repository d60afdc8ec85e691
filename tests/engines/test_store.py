"""Store layout, manifest hashing and the refusal of mismatched, stale or damaged engines."""

from __future__ import annotations

import hashlib

import pytest

from sam2edge.contract.manifest import read_manifest, write_manifest
from sam2edge.engines.store import ArtifactStore
from sam2edge.errors import EngineMismatchError
from tests.engines.recorded import (
    JETSON_INSTALLED,
    JETSON_ORIN_NANO,
    RTX_BUSY,
    RTX_INSTALLED,
    fingerprint_of,
    make_engine_set,
    make_onnx_export,
)

JET = fingerprint_of(JETSON_ORIN_NANO, JETSON_INSTALLED)
RTX = fingerprint_of(RTX_BUSY, RTX_INSTALLED)


@pytest.fixture
def store(tmp_path):
    onnx_dir = make_onnx_export(tmp_path)
    make_engine_set(onnx_dir, JET)
    return ArtifactStore(tmp_path)


def only_set(store):
    (es,) = store.engine_sets()
    return es


def test_layout_and_listing(store, tmp_path):
    (onnx,) = store.onnx_sets()
    assert onnx.dir == tmp_path / "sam2.1_hiera_tiny-abababab" / "onnx"
    assert onnx.variant == "sam2.1_hiera_tiny" and onnx.checkpoint_sha256 == "ab" * 32
    es = only_set(store)
    assert es.dir == onnx.model_dir / "tensorrt" / "fp16" / JET.slug()
    assert store.engine_dir(onnx, "fp16", JET) == es.dir
    assert es.precision == "fp16" and es.fingerprint == JET
    with pytest.raises(ValueError, match="precision"):
        store.engine_dir(onnx, "int8", JET)


def test_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM2EDGE_ENGINES", str(tmp_path / "elsewhere"))
    assert ArtifactStore().root == tmp_path / "elsewhere"
    monkeypatch.delenv("SAM2EDGE_ENGINES")
    assert str(ArtifactStore().root) == "engines"


def test_find_onnx_by_name_folder_and_ambiguity(store, tmp_path):
    by_alias = store.find_onnx("sam2.1_hiera_t")
    assert store.find_onnx(str(by_alias.dir)) == by_alias == store.find_onnx(str(by_alias.model_dir))
    assert store.find_onnx("sam2.1_hiera_tiny-abababab") == by_alias
    with pytest.raises(EngineMismatchError, match="sam2edge export"):
        store.find_onnx("sam2.1_hiera_large")
    make_onnx_export(tmp_path, ckpt="cd" * 32)  # a fine-tuned checkpoint of the same variant
    with pytest.raises(EngineMismatchError, match="several"):
        store.find_onnx("sam2.1_hiera_tiny")


def test_matching_engines_load_verified_bytes(store):
    es = only_set(store)
    onnx = store.find_onnx("sam2.1_hiera_tiny")
    assert store.problems(es, JET, onnx) == []
    store.check(es, JET, onnx)
    data = store.load_engine_bytes(es, "prompt_decoder")
    assert hashlib.sha256(data).hexdigest() == es.artifacts["prompt_decoder"]["sha256"]


def test_other_device_is_refused_with_rebuild_command(store):
    es = only_set(store)
    problems = store.problems(es, RTX)
    print(problems)
    assert any("tensorrt: engine 10.3.0, here 10.8.0" in p for p in problems)
    assert any("compute_capability" in p for p in problems)
    with pytest.raises(EngineMismatchError) as info:
        store.check(es, RTX)
    msg = str(info.value)
    print(msg)
    assert "sam2edge build" in msg and "--precision fp16" in msg and "--max-batch 8" in msg
    assert str(es.dir.parents[2] / "onnx") in msg
    assert store.problems(es, None) == ["TensorRT or a CUDA GPU is not available here"]


def test_truncated_engine_is_never_deserialized(store):
    es = only_set(store)
    path = es.dir / "image_encoder.engine"
    path.write_bytes(path.read_bytes()[:1000])
    assert any("truncated" in p for p in store.problems(es, JET, hash_files=False))
    with pytest.raises(EngineMismatchError, match="truncated") as info:
        store.load_engine_bytes(es, "image_encoder")
    assert "sam2edge build" in str(info.value)


def test_damaged_engine_of_right_size_is_refused(store):
    es = only_set(store)
    path = es.dir / "memory_encoder.engine"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert store.problems(es, JET, hash_files=False) == []  # sizes alone cannot see it ...
    assert any("sha256 differs" in p for p in store.problems(es, JET))  # ... the hash does
    with pytest.raises(EngineMismatchError, match="sha256 differs"):
        store.load_engine_bytes(es, "memory_encoder")


def test_missing_engine_and_unknown_artifact(store):
    es = only_set(store)
    (es.dir / "prompt_decoder.engine").unlink()
    assert "prompt_decoder.engine is missing" in store.problems(es, JET)
    with pytest.raises(EngineMismatchError, match="prompt_decoder.engine"):
        store.load_engine_bytes(es, "prompt_decoder")
    with pytest.raises(EngineMismatchError, match="no engine for artifact"):
        store.load_engine_bytes(es, "nope")


def test_reexported_onnx_makes_engines_stale(store):
    onnx = store.find_onnx("sam2.1_hiera_tiny")
    (onnx.dir / "prompt_decoder.onnx").write_bytes(b"re-exported graph")
    m = read_manifest(onnx.dir)
    m["files"]["prompt_decoder.onnx"]["sha256"] = hashlib.sha256(b"re-exported graph").hexdigest()
    write_manifest(onnx.dir, m)
    onnx = store.find_onnx("sam2.1_hiera_tiny")
    problems = store.problems(only_set(store), JET, onnx)
    assert problems == ["stale: prompt_decoder.engine was built from another prompt_decoder.onnx (re-exported since)"]


def test_unreadable_or_foreign_manifest(store):
    es = only_set(store)
    (es.dir / "manifest.json").write_text("{not json")
    (broken,) = store.engine_sets()
    assert store.problems(broken, JET) == ["unreadable manifest.json"]
    write_manifest(es.dir, {"format": "something-else"})
    (foreign,) = store.engine_sets()
    assert "is not" in store.problems(foreign, JET)[0]
