"""Class: the CLI checks every write, refuses what it cannot honour, and takes several objects.

Commands run in-process through ``sam2edge.cli.main.main`` with the cheap fake runners (the
model loader is replaced; everything else is the real command).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from sam2edge.cli import segment as segment_cmd
from sam2edge.cli import track as track_cmd
from sam2edge.cli.main import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from sam2edge.config import get_config
from sam2edge.contract.artifacts import Artifact
from sam2edge.runtime.image.predictor import SAM2
from tests.reliability import media
from tests.video.fakes import FakeModel, FakeRunner


class AbsentDecoder(FakeRunner):
    """The fake decoder, but the object is never found (object score < 0: every mask empty)."""

    def _prompt_decoder(self, feeds):
        out = super()._prompt_decoder(feeds)
        out["object_score_logits"] = -out["object_score_logits"]
        out["masks"] = -np.abs(out["masks"])
        return out


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert needle in lines[0], lines[0]


@pytest.fixture()
def image(tmp_path, monkeypatch):
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), cv2.cvtColor(media.clip_frames(1, 96, 128)[0], cv2.COLOR_RGB2BGR))
    runners = {n: FakeRunner(n) for n in Artifact.IMAGE}
    predictor = SAM2(runners, get_config("sam2.1_hiera_tiny"), preprocessing="opencv")
    monkeypatch.setattr(segment_cmd, "load_model", lambda args, video=False: predictor)
    return path


@pytest.fixture()
def video(tmp_path, monkeypatch):
    path = media.write_mjpeg(tmp_path / "clip.avi", media.clip_frames(10))
    model = FakeModel()
    monkeypatch.setattr(track_cmd, "load_model", lambda args, video=False: model)
    return path, model


# -- segment ----------------------------------------------------------------------------------
@pytest.mark.parametrize("out, needle", [
    ("/proc/m.png", "/proc/m.png"),  # before: exit 0, no file
    ("FILE/m.png", "not a folder"),  # --out under a file: before, an unexpected NotADirectoryError (exit 3)
    ("m.xyz", ".xyz"),  # before: a cv2.error traceback line
    ("m.jpg", "lossy"),  # before: exit 0 with mask values 0-6 and 249-255
    ("m.webp", "lossy"),
    ("photo.png", "input image"),  # before: the photo was overwritten by the mask
])
def test_segment_refuses_bad_mask_paths(capsys, tmp_path, image, out, needle):
    (tmp_path / "FILE").write_text("a file, not a folder")
    before = image.read_bytes()
    target = out if out.startswith("/") else str(tmp_path / out)
    code, _, err = cli(capsys, "segment", image, "--point", "20,20", "--out", target)
    assert code == EXIT_ERROR
    one_error_line(err, needle)
    assert image.read_bytes() == before


def test_segment_refuses_a_failed_overlay_write(capsys, tmp_path, image):
    code, _, err = cli(capsys, "segment", image, "--point", "20,20", "--out", tmp_path / "m.png",
                       "--overlay", "/proc/overlay.png")
    assert code == EXIT_ERROR
    one_error_line(err, "/proc/overlay.png")


def test_segment_several_objects(capsys, tmp_path, image):
    code, out, err = cli(capsys, "segment", image, "--obj", "1", "--box", "10,10,60,50", "--obj", "7", "--point", "90,60",
                         "--point", "100,70:0", "--out", tmp_path / "m.png", "--overlay", tmp_path / "o.jpg", "--json")
    assert code == EXIT_OK, err
    report = json.loads(out)
    assert [o["obj"] for o in report["objects"]] == [1, 7]
    for obj in report["objects"]:
        mask = cv2.imread(obj["mask"], cv2.IMREAD_GRAYSCALE)
        assert mask.shape == (96, 128) and set(np.unique(mask)) <= {0, 255} and obj["mask_area"] == (mask == 255).sum()
    assert Path(report["objects"][0]["mask"]).name == "m-1.png" and Path(report["objects"][1]["mask"]).name == "m-7.png"
    assert cv2.imread(str(tmp_path / "o.jpg")).shape == (96, 128, 3)


@pytest.mark.parametrize("argv, needle", [
    (["--box", "10,10,60,50", "--obj", "3"], "--obj 3"),  # prompts belong to the --obj before them
    (["--obj", "1", "--box", "1,1,5,5", "--box", "2,2,6,6"], "one --box"),
    (["--obj", "1", "--point", "5,5", "--obj", "1", "--point", "6,6"], "twice"),
])
def test_segment_object_groups_are_explicit(capsys, tmp_path, image, argv, needle):
    code, _, err = cli(capsys, "segment", image, *argv, "--out", tmp_path / "m.png")
    assert code in (EXIT_ERROR, EXIT_USAGE) and needle in err, err


def test_help_documents_object_groups(capsys):
    for command in ("segment", "track"):
        code, out, _ = cli(capsys, command, "--help")
        assert code == 0 and "--obj ID" in out and "several objects" in out, out


# -- track ------------------------------------------------------------------------------------
def test_track_refuses_an_out_folder_under_a_file(capsys, tmp_path, video):
    (tmp_path / "FILE").write_text("x")
    code, _, err = cli(capsys, "track", video[0], "--box", "10,10,30,30", "--out", tmp_path / "FILE" / "masks")
    assert code == EXIT_ERROR
    one_error_line(err, "FILE")


def test_track_refuses_a_box_larger_than_the_video(capsys, tmp_path, video):
    code, _, err = cli(capsys, "track", video[0], "--box", "0,0,640,480", "--out", tmp_path / "masks")
    assert code == EXIT_ERROR
    one_error_line(err, "box")
    assert not list((tmp_path / "masks").glob("*.png"))


def test_track_refuses_negative_max_frames(capsys, tmp_path, video):
    code, _, err = cli(capsys, "track", video[0], "--box", "10,10,30,30", "--out", tmp_path / "m", "--max-frames", "-1")
    assert code == EXIT_USAGE and "--max-frames" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["o.gif", "o.xyz", "/proc/o.mp4"])
def test_track_refuses_overlays_it_cannot_write(capsys, tmp_path, video, name):
    """Refused before tracking (before: after every frame was tracked and its mask written)."""
    target = name if name.startswith("/") else tmp_path / name
    code, _, err = cli(capsys, "track", video[0], "--box", "10,10,30,30", "--out", tmp_path / "m", "--overlay", target)
    assert code == EXIT_ERROR and "Traceback" not in err and "overlay" in err, err
    assert not list((tmp_path / "m").glob("*.png")), "nothing is tracked for an overlay that cannot be written"


def test_track_warns_when_every_mask_is_empty(capsys, tmp_path, video):
    _, model = video
    model.runners[Artifact.PROMPT_DECODER] = AbsentDecoder(Artifact.PROMPT_DECODER)
    code, _, err = cli(capsys, "track", video[0], "--box", "10,10,30,30", "--out", tmp_path / "m")
    assert code == EXIT_OK
    assert "warning" in err and "empty" in err, err


@pytest.mark.parametrize("ext, codec", [(".mp4", "h264"), (".webm", "vp9")])
def test_overlay_video_plays_in_a_browser(capsys, tmp_path, video, ext, codec):
    """Before: MPEG-4 Part 2 ('mp4v'), which browsers do not play."""
    av = pytest.importorskip("av", reason="reading the codec back needs PyAV")
    overlay = tmp_path / f"overlay{ext}"
    code, _, err = cli(capsys, "track", video[0], "--box", "10,10,30,30", "--out", tmp_path / "m", "--overlay", overlay)
    assert code == EXIT_OK, err
    with av.open(str(overlay)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == codec and stream.codec_context.pix_fmt == "yuv420p"
        assert sum(1 for _ in container.decode(video=0)) == 10


def test_track_several_objects(capsys, tmp_path, video):
    path, _ = video
    code, out, err = cli(capsys, "track", path, "--obj", "1", "--box", "10,10,30,30", "--obj", "2", "--frame", "3",
                         "--point", "40,20", "--out", tmp_path / "m", "--json")
    assert code == EXIT_OK, err
    report = json.loads(out)
    assert report["frames"] == 10 and [o["obj"] for o in report["objects"]] == [1, 2]
    for obj in (1, 2):
        names = sorted(p.name for p in (tmp_path / "m" / str(obj)).glob("*.png"))
        assert names == [f"{i:05d}.png" for i in range(10)]
