"""The scale-out commands check every write like the other commands (sam2edge/cli/outputs.py): a bad --out or
input is one line naming it, exit 1, before a model loads or a cluster starts; a write that fails later says
which file and leaves no half-written JSON or model folder. No Ray, no Triton server, no network runs here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sam2edge.cli import label as label_cmd
from sam2edge.cli.main import EXIT_ERROR, EXIT_USAGE, main
from sam2edge.errors import InputError
from sam2edge.scale import triton_repo
from sam2edge.scale.labels import CocoWriter, folder_jobs, read_jsonl, write_json

ROOT = os.geteuid() == 0  # root ignores file modes: a read-only folder is simulated with /proc instead


def cli(capsys, *argv: str) -> tuple[int, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    return code, capsys.readouterr().err


def one_line(err: str, needle: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert needle in lines[0], lines[0]


@pytest.fixture()
def jobs(tmp_path) -> Path:
    path = tmp_path / "jobs.jsonl"
    path.write_text(json.dumps({"image": "a.png", "box": [1, 2, 30, 40]}) + "\n")
    return path


@pytest.fixture()
def no_model(monkeypatch):
    """Loading a model or starting Ray fails the test: every refusal here must come before either."""
    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded or a cluster started before the outputs were checked")

    for name in ("label_images", "label_images_local", "track_videos", "track_videos_local"):
        monkeypatch.setattr(label_cmd, name, forbidden)


@pytest.mark.parametrize("out, needle", [
    ("FILE/labels", "not a folder"),  # --out under a file (before: NotADirectoryError after the whole run)
    ("/proc/labels", "/proc/labels"),  # cannot be created
    ("jobs.jsonl", "jobs.jsonl"),  # --out is the jobs file itself
])
def test_label_refuses_bad_out_before_any_work(capsys, tmp_path, jobs, no_model, out, needle):
    (tmp_path / "FILE").write_text("a file")
    code, err = cli(capsys, "label", "--prompts", jobs, "--out", tmp_path / out if not out.startswith("/") else out,
                    "--local")
    assert code == EXIT_ERROR
    one_line(err, needle)
    assert jobs.read_text().startswith("{")  # the input is untouched


def test_label_refuses_the_jobs_file_as_its_json(capsys, tmp_path, no_model):
    jobs = tmp_path / "annotations.json"  # a jobs file named like the output, in --out
    jobs.write_text(json.dumps({"image": "a.png", "box": [1, 2, 30, 40]}) + "\n")
    code, err = cli(capsys, "label", "--prompts", jobs, "--out", tmp_path, "--local")
    assert code == EXIT_ERROR
    one_line(err, "input")
    assert json.loads(jobs.read_text())["image"] == "a.png"


@pytest.mark.parametrize("args, needle", [
    (["--prompts", "missing.jsonl"], "missing.jsonl cannot be read"),
    (["--videos", "empty.jsonl"], "no jobs"),
    (["--folder", "nowhere"], "not a folder"),
    (["--folder", "empty"], "holds no images"),
])
def test_label_refuses_bad_inputs(capsys, tmp_path, no_model, args, needle):
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.png").write_bytes(b"x")  # hidden files are not images to label
    argv = [a if a.startswith("--") else tmp_path / a for a in args]
    code, err = cli(capsys, "label", *argv, "--out", tmp_path / "out", "--local")
    assert code == EXIT_ERROR
    one_line(err, needle)


@pytest.mark.parametrize("option, value", [("--actors", "0"), ("--threads", "0"), ("--max-frames", "-1")])
def test_label_refuses_bad_numbers(capsys, tmp_path, jobs, no_model, option, value):
    code, err = cli(capsys, "label", "--prompts", jobs, "--out", tmp_path / "out", option, value)
    assert code == EXIT_USAGE and option in err


def test_a_mask_that_cannot_be_written_is_an_error_not_a_missing_file(tmp_path):
    pytest.importorskip("pycocotools")
    from sam2edge.scale.labels import mask_record

    mask = np.zeros((8, 8), bool)
    mask[2:5, 3:6] = True
    result = {"id": 1, "file_name": "a.png", "height": 8, "width": 8,
              "annotations": [{**mask_record(mask, 0.9), "prompt": 0, "category": "object"}]}
    writer = CocoWriter(tmp_path / "out")
    writer.add(result)
    written = tmp_path / "out" / "masks" / "000001_000.png"
    assert written.is_file()
    (tmp_path / "FILE").write_text("a file")
    with pytest.raises(InputError, match="cannot be"):
        CocoWriter(tmp_path / "FILE" / "out").add(result)
    calls = []
    CocoWriter(tmp_path / "out2", save_mask=lambda p, m: calls.append((p.name, int(m.max()), int(m.sum() // 255)))).add(result)
    assert calls == [("000001_000.png", 255, 9)]  # the CLI's checked writer gets the 0/255 mask


def test_json_is_written_whole_or_not_at_all(tmp_path):
    path = write_json(tmp_path / "a" / "doc.json", {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]}
    (tmp_path / "FILE").write_text("a file")
    with pytest.raises(InputError, match="cannot be written"):
        write_json(tmp_path / "FILE" / "doc.json", {})
    (tmp_path / "dir.json").mkdir()  # the target is a folder: the rename fails, no temporary file stays
    with pytest.raises(InputError, match="dir.json"):
        write_json(tmp_path / "dir.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE", "a", "dir.json"]


def test_jobs_files_and_folders_are_checked(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"image": "a.png"}\n[1, 2]\n')
    with pytest.raises(InputError, match="bad.jsonl:2"):
        read_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "imgs" / ".cache").mkdir(parents=True)
    (tmp_path / "imgs" / ".cache" / "x.png").write_bytes(b"x")
    (tmp_path / "imgs" / "b.jpg").write_bytes(b"x")
    assert [j["file_name"] for j in folder_jobs(tmp_path / "imgs")] == ["b.jpg"]


def test_triton_repo_refuses_bad_out_before_reading_the_export(capsys, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the export was read before --out was checked")

    monkeypatch.setattr(triton_repo.ArtifactStore, "find_onnx", forbidden)
    (tmp_path / "FILE").write_text("a file")
    code, err = cli(capsys, "triton-repo", "sam2.1_hiera_tiny", "--out", tmp_path / "FILE" / "repo")
    assert code == EXIT_ERROR
    one_line(err, "not a folder")
    code, err = cli(capsys, "triton-repo", "sam2.1_hiera_tiny", "--out", tmp_path / "repo", "--instances", "0")
    assert code == EXIT_USAGE and "--instances" in err


def test_a_failed_model_write_names_the_folder_and_leaves_nothing(fake_export, tmp_path, monkeypatch):
    """A write that fails half-way (here: the package copy of the Python platform) is an InputError naming the
    model folder, and that folder is removed, so Triton never loads half a model."""
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient[grpc]")

    def disk_full(dest):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(triton_repo, "_copy_package", disk_full)
    out = tmp_path / "repo"
    with pytest.raises(InputError, match=r"image_encoder cannot be written: No space left on device"):
        triton_repo.write_repository(fake_export.parent, out, "python")
    assert sorted(p.name for p in out.iterdir()) == []


def test_label_folder_needs_automatic_masks_before_a_cluster_starts(capsys, tmp_path, no_model, monkeypatch):
    from sam2edge.runtime.image.predictor import SAM2

    monkeypatch.delattr(SAM2, "generate_masks", raising=False)  # as on a sam2edge without automatic masks
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    code, err = cli(capsys, "label", "--folder", tmp_path / "imgs", "--out", tmp_path / "out")
    assert code == EXIT_ERROR
    one_line(err, "automatic mask generation")
    assert not (tmp_path / "out").exists()  # refused before anything was written
