"""Class: video works on every way a model is loaded.

``add_mask`` needs three host constants of the model (mask_downsample conv, no_obj_ptr); an
export folder carries them in its manifest and a PyTorch model in its weights. ``track()``
needs the two memory networks, which a model loaded for images does not hold yet.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.backends import registry
from sam2edge.contract.artifacts import Artifact
from sam2edge.contract.manifest import read_manifest, write_manifest
from sam2edge.runtime.image.predictor import SAM2
from tests.engines.recorded import make_onnx_export
from tests.reliability import media
from tests.video.fakes import FakeRunner

OPTS = {"input_color_format": "rgb", "preprocessing": "opencv"}
WEIGHT = np.arange(16, dtype=np.float32).reshape(4, 4) / 64


@pytest.fixture()
def export_folder(tmp_path, monkeypatch):
    """A store export (placeholder ONNX files) whose manifest carries host constants as the exporter writes
    them; its runners are the cheap fakes (the ONNX files are never parsed)."""
    onnx_dir = make_onnx_export(tmp_path / "store", names=tuple(Artifact.ALL))
    manifest = read_manifest(onnx_dir)
    manifest["host_constants"] = {"no_obj_ptr": [0.5] * 256, "mask_downsample_weight": WEIGHT.tolist(),
                                  "mask_downsample_bias": 0.25}
    write_manifest(onnx_dir, manifest)
    built: list[tuple[str, ...]] = []

    def fake_create_runners(backend, sources, device, artifacts):
        built.append(tuple(artifacts))
        return {name: FakeRunner(name) for name in artifacts}

    monkeypatch.setattr(registry, "create_runners", fake_create_runners)
    return onnx_dir, built


@pytest.mark.parametrize("video", [True, False])
def test_add_mask_on_a_model_loaded_from_an_export_folder(export_folder, video):
    """Before: BackendUnavailableError 'this backend's loader did not provide them (re-export the model...)'
    although the manifest holds them; without video=True, track() refused to start."""
    onnx_dir, built = export_folder
    model = SAM2.from_pretrained(str(onnx_dir.parent), backend="onnxruntime", video=video)
    tracker = model.track(media.clip_frames(4), **OPTS)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    res = tracker.add_mask(1, 3, mask)
    assert res.obj_ids == (3,) and res.object_scores[0] == 10.0
    got = res.masks[0]
    assert (got & mask).sum() / (got | mask).sum() > 0.9, "the output of a mask prompt is the mask itself"
    empty = tracker.add_mask(2, 4, np.zeros((48, 64), bool))
    assert empty.object_scores[1] == -10.0 and not empty.masks[1].any()
    # the absent object's pointer is the manifest's no_obj_ptr
    np.testing.assert_array_equal(tracker.memory(4).lookup(2, True).obj_ptr, np.full(256, 0.5, np.float32))
    assert [r.frame_idx for r in tracker.propagate(max_frames=1)] == [1, 2]
    if not video:
        assert built[0] == Artifact.IMAGE and set(built[-1]) == set(Artifact.ALL) - set(Artifact.IMAGE)


def test_track_on_a_pytorch_model_loaded_for_images(tmp_path):
    """Before: 'Load it with AutoModel.from_pretrained(..., video=True) ... or from a PyTorch checkpoint' for a
    model that was loaded from a PyTorch checkpoint, and add_mask could not find its constants. Now the memory
    networks are added on the same loaded model (no second copy of the weights) and add_mask finds the model's
    constants. No network runs here (add_mask itself runs in the export-folder test; a tiny encoder pass costs
    seconds on 2 cores)."""
    pytest.importorskip("torch", reason="the PyTorch backend needs torch")
    import torch

    from sam2edge.model.checkpoint import write_random_checkpoint
    from sam2edge.runtime.video.mask_prompt import torch_model_of

    torch.set_num_threads(2)
    ckpt = write_random_checkpoint(tmp_path / "tiny.pt", "sam2.1_hiera_tiny", seed=3)
    model = SAM2.from_pretrained(str(ckpt), backend="torch", store_dir=str(tmp_path / "store"))
    assert Artifact.MEMORY_ATTENTION not in model.runners
    tracker = model.track(media.clip_frames(1), **OPTS)
    net = torch_model_of(model.runners[Artifact.PROMPT_DECODER])
    for name in (Artifact.MEMORY_ATTENTION, Artifact.MEMORY_ENCODER):
        assert torch_model_of(model.runners[name]) is net, f"{name} must run on the model already loaded"
    consts = tracker._host_constants
    assert consts is not None, "add_mask would refuse: no host constants"
    np.testing.assert_array_equal(consts["no_obj_ptr"], net.no_obj_ptr.detach().numpy().reshape(-1))
    np.testing.assert_array_equal(consts["mask_downsample.weight"], net.mask_downsample.weight.detach().numpy())
