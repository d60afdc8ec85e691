"""manifest.json helpers: atomic write/read, hashing, file verification, store layout."""

from __future__ import annotations

import hashlib
import json

import pytest

from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.contract.manifest import (
    MANIFEST_NAME,
    onnx_dir,
    package_versions,
    read_manifest,
    spec_to_dict,
    store_root,
    verify_files,
    write_manifest,
)
from sam2edge.errors import EngineMismatchError
from sam2edge.integrity import sha256_file


def test_write_read_roundtrip(tmp_path):
    data = {"variant": "sam2.1_hiera_tiny", "nested": {"a": [1, 2.5, None]}, "figure": 1.25e-5}
    path = write_manifest(tmp_path / "x", data)
    assert path.name == MANIFEST_NAME
    back = read_manifest(tmp_path / "x")
    assert back["schema_version"] == 1
    assert {k: back[k] for k in data} == data
    assert [p.name for p in (tmp_path / "x").iterdir()] == [MANIFEST_NAME]  # no temp file left
    assert path.stat().st_mode & 0o044  # readable by others (not mkstemp's 0600)


def test_read_missing_or_broken(tmp_path):
    with pytest.raises(EngineMismatchError, match="sam2edge export"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(EngineMismatchError, match="unreadable"):
        read_manifest(tmp_path)


def test_sha256_and_verify_files(tmp_path):
    blob = bytes(range(256)) * 5000
    (tmp_path / "a.onnx").write_bytes(blob)
    assert sha256_file(tmp_path / "a.onnx", chunk=4096) == hashlib.sha256(blob).hexdigest()
    manifest = {"files": {"a.onnx": {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}}}
    verify_files(tmp_path, manifest)
    (tmp_path / "a.onnx").write_bytes(blob[:-1] + b"\x00")
    with pytest.raises(EngineMismatchError, match="a.onnx"):
        verify_files(tmp_path, manifest)
    (tmp_path / "a.onnx").unlink()
    with pytest.raises(EngineMismatchError, match="missing"):
        verify_files(tmp_path, manifest)


def test_store_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM2EDGE_ENGINES", str(tmp_path / "store"))
    assert store_root() == tmp_path / "store"
    assert onnx_dir(None, "sam2.1_hiera_tiny", "abcdef0123456789") == tmp_path / "store/sam2.1_hiera_tiny-abcdef01/onnx"
    assert onnx_dir(tmp_path / "r", "v", "12345678ff") == tmp_path / "r/v-12345678/onnx"
    monkeypatch.delenv("SAM2EDGE_ENGINES")
    assert str(store_root()) == "engines"


def test_spec_to_dict_is_json_and_complete():
    for spec in ARTIFACTS.values():
        d = json.loads(json.dumps(spec_to_dict(spec)))
        assert [t["name"] for t in d["inputs"]] == spec.input_names
        assert [t["name"] for t in d["outputs"]] == spec.output_names
        assert set(d["dims"]) == set(spec.dims())
        assert all(t["doc"] for t in d["inputs"] + d["outputs"])


def test_package_versions():
    v = package_versions("numpy", "surely-not-installed-pkg")
    assert v["numpy"] and v["surely-not-installed-pkg"] is None and v["python"]
