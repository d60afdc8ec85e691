"""`sam2edge everything` as a person uses it: mask PNGs or a label image, an overlay, COCO-style JSON.

The predictor is the network-free fake of tests/video/fakes.py (squares around each point), so
this checks the command's files and formats, not the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam2edge.cli.main import main
from sam2edge.processing.amg import coco_to_rle, rle_to_mask
from sam2edge.runtime.image.predictor import SAM2
from tests.video.fakes import FakeModel

cv2 = pytest.importorskip("cv2")


LOADS: list[str] = []


@pytest.fixture()
def image(tmp_path, monkeypatch):
    fake = FakeModel()
    LOADS.clear()

    def load(cls, name, **kwargs):
        LOADS.append(name)
        return cls(fake.runners, fake.config, preprocessing="opencv")

    monkeypatch.setattr(SAM2, "from_pretrained", classmethod(load))
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    return path


def test_masks_overlay_and_coco_json(tmp_path, image, capsys):
    out, overlay, js = tmp_path / "masks", tmp_path / "overlay.png", tmp_path / "masks.json"
    code = main(["everything", str(image), "--out", str(out), "--overlay", str(overlay), "--json", str(js), "--rle",
                     "--points-per-side", "3", "--box-nms-thresh", "0.5"])
    assert code == 0
    err = capsys.readouterr().err
    assert "9/9 points" in err and "masks in" in err
    doc = json.loads(js.read_text())
    anns = doc["annotations"]
    assert anns and doc["images"][0]["height"] == 120 and doc["images"][0]["width"] == 160
    for ann in anns:
        png = cv2.imread(str(out / ann["mask_file"]), cv2.IMREAD_GRAYSCALE) > 0
        assert np.array_equal(rle_to_mask(coco_to_rle(ann["segmentation"])), png)
        assert ann["area"] == int(png.sum()) and len(ann["bbox"]) == 4
    drawn = cv2.imread(str(overlay))
    assert drawn.shape == (120, 160, 3) and not np.array_equal(drawn, cv2.imread(str(image)))


def test_label_image(tmp_path, image):
    out, js = tmp_path / "labels", tmp_path / "l.json"
    assert main(["everything", str(image), "--out", str(out), "--labels", "--json", str(js), "--quiet",
                     "--points-per-side", "3", "--box-nms-thresh", "0.5"]) == 0
    labels = cv2.imread(str(out / "labels.png"), cv2.IMREAD_UNCHANGED)
    anns = json.loads(js.read_text())["annotations"]
    assert labels.dtype == np.uint16 and set(np.unique(labels)) <= {0, *(a["label"] for a in anns)}
    assert all("segmentation" not in a for a in anns)


def test_bad_input_is_a_clean_error(tmp_path, image, capsys):
    assert main(["everything", str(tmp_path / "missing.png"), "--out", str(tmp_path)]) == 1
    assert "could not be read" in capsys.readouterr().err
    assert main(["everything", str(image), "--out", str(tmp_path), "--points-per-side", "0"]) == 1
    assert "points_per_side" in capsys.readouterr().err
    assert main(["everything", str(image), "--out", str(tmp_path), "--rle"]) == 1


def test_every_output_is_checked_before_the_model_loads(tmp_path, image, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        (["--overlay", str(image)], "is the input image"),
        (["--overlay", str(tmp_path / "o.xyz")], "no image writer"),
        (["--json", str(blocker / "m.json")], "is a file, not a folder"),
        (["--json", str(tmp_path)], "is a folder"),
        (["--crop-n-layers", "-1"], "crop_n_layers"),
        (["--pred-iou-thresh", "1.5"], "pred_iou_thresh"),
    ]
    for extra, message in cases:
        assert main(["everything", str(image), "--out", str(tmp_path / "m"), *extra]) == 1, extra
        assert message in capsys.readouterr().err, extra
    assert main(["everything", str(image), "--out", str(blocker)]) == 1
    assert "--out" in capsys.readouterr().err
    assert LOADS == []  # nothing was loaded, nothing written
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
