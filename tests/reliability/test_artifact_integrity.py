"""Integrity of what we load (issue 13): exports verified at load, paths kept inside their folder,
checkpoints matched to exports by their full hash, damaged store entries skipped.

Probes that failed on the earlier main: a flipped weight byte in prompt_decoder.onnx, a swapped file,
a symlink, or a manifest entry ``"file": "../x.onnx"`` / an absolute path all loaded; a TensorRT
manifest entry could make load_engine_bytes read any file; an export whose folder name matched the
checkpoint's first 8 hex digits was used whatever its full hash; an official variant name used
whatever export of that variant was in the store; a manifest without ``variant`` gave a KeyError.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sam2edge.contract.manifest import MANIFEST_NAME, read_manifest
from sam2edge.errors import BackendUnavailableError, EngineMismatchError, IntegrityError

pytest.importorskip("onnxruntime")


def clone_export(src_onnx: Path, dst_store: Path, folder_name: str | None = None) -> Path:
    """A copy of an export folder (files hard-linked; edit only through copies) in another store."""
    dst = dst_store / (folder_name or src_onnx.parent.name) / "onnx"
    dst.mkdir(parents=True)
    for f in src_onnx.iterdir():
        if f.is_file():
            os.link(f, dst / f.name)
    return dst


def rewrite(path: Path, data: bytes) -> None:
    path.unlink()  # break the hard link before writing
    path.write_bytes(data)


def edit_manifest(onnx: Path, edit) -> None:
    manifest = json.loads((onnx / MANIFEST_NAME).read_text())
    edit(manifest)
    rewrite(onnx / MANIFEST_NAME, json.dumps(manifest).encode())


def activate_decoder(onnx: Path):
    from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners

    runner = make_onnxruntime_runners(onnx, artifacts=["prompt_decoder"])["prompt_decoder"]
    runner.activate()
    return runner


def test_a_flipped_byte_or_a_swapped_file_is_refused_before_a_session_is_built(tiny_export, tmp_path):
    onnx = clone_export(tiny_export.onnx_dir, tmp_path / "a")
    activate_decoder(onnx).deactivate()  # the untouched copy loads
    data = bytearray((onnx / "prompt_decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0x40  # one weight byte
    rewrite(onnx / "prompt_decoder.onnx", bytes(data))
    with pytest.raises(IntegrityError, match="prompt_decoder.onnx: sha256 differs"):
        activate_decoder(onnx)
    from sam2edge import AutoModel

    with pytest.raises(IntegrityError, match="prompt_decoder.onnx: sha256 differs"):  # strict: the load error itself
        AutoModel.from_pretrained(str(onnx.parent), backend="onnxruntime", strict=True)
    swapped = clone_export(tiny_export.onnx_dir, tmp_path / "b")
    rewrite(swapped / "prompt_decoder.onnx", (swapped / "memory_encoder.onnx").read_bytes())
    with pytest.raises(IntegrityError, match="the manifest says"):
        activate_decoder(swapped)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_manifest_paths_cannot_leave_their_folder(tiny_export, tmp_path, where):
    onnx = clone_export(tiny_export.onnx_dir, tmp_path / "store")
    outside = tmp_path / "outside.onnx"
    shutil.copy(tiny_export.onnx_dir / "prompt_decoder.onnx", outside)  # the genuine bytes: only the path is wrong
    if where == "symlink":
        (onnx / "prompt_decoder.onnx").unlink()
        (onnx / "prompt_decoder.onnx").symlink_to(outside)
    else:
        name = "../../../outside.onnx" if where == "parent" else str(outside)
        edit_manifest(onnx, lambda m: m["artifacts"]["prompt_decoder"].update(file=name))
    with pytest.raises(IntegrityError, match="outside|not a plain path"):
        activate_decoder(onnx)


def test_engine_manifest_cannot_make_the_store_read_any_file(tmp_path):
    from sam2edge.engines.store import ArtifactStore
    from tests.engines.recorded import JETSON_INSTALLED, JETSON_ORIN_NANO, fingerprint_of, make_engine_set, make_onnx_export

    engines_dir = make_engine_set(make_onnx_export(tmp_path), fingerprint_of(JETSON_ORIN_NANO, JETSON_INSTALLED))
    secret = tmp_path / "secret.txt"
    secret.write_text("not an engine")
    manifest = read_manifest(engines_dir)
    manifest["artifacts"]["prompt_decoder"]["file"] = "../../../../secret.txt"
    (engines_dir / MANIFEST_NAME).write_text(json.dumps(manifest))
    store = ArtifactStore(tmp_path)
    es = next(e for e in store.engine_sets() if e.dir == engines_dir)
    with pytest.raises(IntegrityError, match="not a plain path"):
        store.load_engine_bytes(es, "prompt_decoder")


def test_manifest_fields_of_the_wrong_kind_are_typed_errors(tiny_export, tmp_path):
    from sam2edge import AutoModel

    onnx = clone_export(tiny_export.onnx_dir, tmp_path)
    edit_manifest(onnx, lambda m: m.pop("variant"))
    with pytest.raises(IntegrityError, match="field 'variant' must be str, got nothing"):
        AutoModel.from_pretrained(str(onnx.parent))
    edit_manifest(onnx, lambda m: m.update(variant=["sam2.1_hiera_tiny"], artifacts="x"))
    with pytest.raises(IntegrityError, match="field 'variant' must be str, got list"):
        AutoModel.from_pretrained(str(onnx.parent))


def test_a_checkpoint_uses_only_an_export_made_from_it(tiny_export, tmp_path):
    """Same <variant>-<sha8> folder, different full hash: not used (PyTorch runs instead)."""
    from sam2edge import AutoModel

    sha = tiny_export.manifest["checkpoint_sha256"]
    genuine = clone_export(tiny_export.onnx_dir, tmp_path / "genuine")
    model = AutoModel.from_pretrained(str(tiny_export.checkpoint), store_dir=str(genuine.parents[1]))
    assert model.active_backend == "onnxruntime-cpu"
    impostor = clone_export(tiny_export.onnx_dir, tmp_path / "impostor")
    edit_manifest(impostor, lambda m: m.update(checkpoint_sha256=sha[:8] + "0" * 56))
    model = AutoModel.from_pretrained(str(tiny_export.checkpoint), store_dir=str(impostor.parents[1]))
    assert model.active_backend == "torch-cpu"
    named = AutoModel.from_pretrained(str(impostor.parent), backend="onnxruntime", strict=True)
    assert named.active_backend == "onnxruntime-cpu"  # a folder named explicitly is used as named (files verified)


def test_a_variant_name_uses_only_the_export_of_its_own_checkpoint(tiny_export, tmp_path, monkeypatch):
    """The store holds an export of random weights named like the official variant: a name must not pick it,
    unless the checkpoint that name stands for ($SAM2EDGE_MODELS_DIR) is the one it was made from."""
    from sam2edge import AutoModel

    store = clone_export(tiny_export.onnx_dir, tmp_path / "store").parents[1]
    monkeypatch.delenv("SAM2EDGE_MODELS_DIR", raising=False)
    with pytest.raises(BackendUnavailableError, match="no ONNX export of sam2.1_hiera_tiny"):
        AutoModel.from_pretrained("sam2.1_hiera_tiny", backend="onnxruntime", strict=True, store_dir=str(store))
    models = tmp_path / "models"
    models.mkdir()
    os.link(tiny_export.checkpoint, models / "sam2.1_hiera_tiny.pt")
    monkeypatch.setenv("SAM2EDGE_MODELS_DIR", str(models))
    model = AutoModel.from_pretrained("sam2.1_hiera_tiny", backend="onnxruntime", strict=True, store_dir=str(store))
    assert model.active_backend == "onnxruntime-cpu"


def test_a_damaged_store_entry_is_skipped_and_pytorch_still_runs(tiny_export, tmp_path, caplog):
    from sam2edge import AutoModel
    from sam2edge.engines.store import ArtifactStore

    good = clone_export(tiny_export.onnx_dir, tmp_path, "sam2.1_hiera_tiny-aaaaaaaa")
    bad = clone_export(tiny_export.onnx_dir, tmp_path, tiny_export.onnx_dir.parent.name)
    (bad / MANIFEST_NAME).unlink()  # what an interrupted export used to leave
    with caplog.at_level(logging.WARNING):
        assert [s.dir for s in ArtifactStore(tmp_path).onnx_sets()] == [good]
    assert "skipping the damaged store entry" in caplog.text
    model = AutoModel.from_pretrained(str(tiny_export.checkpoint), store_dir=str(tmp_path))
    assert model.active_backend == "torch-cpu"
    img = np.zeros((32, 32, 3), np.uint8)
    assert model.segment_images(img, boxes=np.array([2, 2, 20, 20]))[0].masks.shape == (3, 32, 32)


def test_engine_problems_name_the_file(tmp_path):
    from tests.engines.recorded import JETSON_INSTALLED, JETSON_ORIN_NANO, fingerprint_of, make_engine_set, make_onnx_export

    engines_dir = make_engine_set(make_onnx_export(tmp_path), fingerprint_of(JETSON_ORIN_NANO, JETSON_INSTALLED))
    (engines_dir / "prompt_decoder.engine").write_bytes(b"tampered")
    from sam2edge.engines.store import ArtifactStore

    store = ArtifactStore(tmp_path)
    es = next(e for e in store.engine_sets() if e.dir == engines_dir)
    with pytest.raises(EngineMismatchError, match="(?s)prompt_decoder.engine.*rebuild them on this machine"):
        store.load_engine_bytes(es, "prompt_decoder")


def test_the_tensorrt_provider_always_has_cuda_behind_it():
    from sam2edge.backends.onnxruntime_runner import normalize_providers

    assert [n for n, _ in normalize_providers(["tensorrt", "cpu"])] == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    chain = normalize_providers([("tensorrt", {"device_id": 1, "trt_fp16_enable": True})])
    assert chain[1] == ("CUDAExecutionProvider", {"device_id": 1})
    assert [n for n, _ in normalize_providers(["cuda", "cpu"])] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
