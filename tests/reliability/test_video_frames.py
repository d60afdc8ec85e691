"""Class: video never drops or substitutes frames quietly.

Damaged files raise a VideoError naming the frame (never a short video, never another frame in
its place), hidden files are not frames, and impossible propagation ranges are refused.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from sam2edge.errors import InputError, VideoError
from sam2edge.runtime.video import open_source, track
from sam2edge.runtime.video.frames import EndOfVideo
from tests.reliability import media
from tests.video.fakes import FakeModel

OPTS = {"input_color_format": "rgb", "preprocessing": "opencv"}


@pytest.fixture(scope="module")
def clean_avi(tmp_path_factory):
    folder = tmp_path_factory.mktemp("avi")
    return media.write_mjpeg(folder / "clean.avi", media.clip_frames(10))


def _read_all(source) -> int:
    n = 0
    while source.num_frames is None or n < source.num_frames:
        try:
            source.read(n)
        except EndOfVideo:
            break
        n += 1
    return n


def _frame_named(exc: BaseException) -> set[int]:
    return {int(m) for m in re.findall(r"frame (\d+)", str(exc))}


@pytest.mark.parametrize("backend", ["opencv", "pyav"])
def test_clean_video_reads_every_frame(clean_avi, backend):
    if backend == "pyav":
        pytest.importorskip("av", reason="the PyAV reader needs PyAV")
    src = open_source(clean_avi, video_backend=backend)
    assert src.num_frames == 10 and _read_all(src) == 10
    # random access gives the frames sequential reading gives
    seq = open_source(clean_avi, video_backend=backend)
    frames = [seq.read(i) for i in range(10)]
    for i in (7, 2, 9, 0, 5):
        np.testing.assert_array_equal(src.read(i), frames[i])


def test_pyav_random_access_with_b_frames_equals_sequential_and_opencv(tmp_path):
    """H.264 with B-frames and a keyframe every 8 frames: every frame read out of order (backwards, as the
    reverse pass does) equals the sequential read, and PyAV ("auto" when installed) decodes the same
    pixels as OpenCV did before."""
    av = pytest.importorskip("av", reason="the PyAV reader needs PyAV")
    frames = media.clip_frames(24, 48, 64)
    path = tmp_path / "gop.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.options = 64, 48, "yuv420p", {"g": "8", "bf": "2"}
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    seq = open_source(path, video_backend="pyav")
    sequential = [seq.read(i) for i in range(seq.num_frames)]
    assert len(sequential) == 24
    rnd = open_source(path)
    for i in [23, 0, 12, 11, 10, 9, 8, 7, *range(23, -1, -1)]:
        np.testing.assert_array_equal(rnd.read(i), sequential[i])
    cv = open_source(path, video_backend="opencv")
    for i in range(24):
        np.testing.assert_array_equal(cv.read(i), sequential[i])


@pytest.mark.parametrize("backend", ["opencv", "pyav"])
def test_file_truncated_inside_frame_5_raises(clean_avi, tmp_path, backend):
    """Cut inside frame 5 of 10. Before: 6 frames then a quiet end (EndOfVideo, propagate stops, CLI exit 0).
    PyAV names frame 5 (its packet is incomplete); OpenCV decodes a partial frame 5 without telling and
    is caught at frame 6, which the file announces but does not hold."""
    if backend == "pyav":
        pytest.importorskip("av", reason="the PyAV reader needs PyAV")
    bad = media.truncate_inside_frame(clean_avi, tmp_path / "cut.avi", 5)
    tracker = track(FakeModel(), bad, video_backend=backend, **OPTS)
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    seen = []
    with pytest.raises(VideoError) as info:
        for result in tracker.propagate():
            seen.append(result.frame_idx)
    assert not isinstance(info.value, EndOfVideo), f"a damaged file must not read as a short one: {info.value}"
    expected = 5 if backend == "pyav" else 6
    assert expected in _frame_named(info.value), info.value
    assert seen == list(range(expected)), seen


def test_corrupt_mjpeg_frame_raises_with_pyav(clean_avi, tmp_path):
    """Random bytes inside frame 5's JPEG data. Before: OpenCV and PyAV hand back a frame that is mostly
    frame 4 (FFmpeg's MJPEG decoder leaves the previous picture where it could not decode)."""
    pytest.importorskip("av", reason="the PyAV reader needs PyAV")
    bad = media.corrupt_frame(clean_avi, tmp_path / "corrupt.avi", 5)
    for backend in ("pyav", "auto"):
        src = open_source(bad, video_backend=backend)
        for i in range(5):
            src.read(i)
        with pytest.raises(VideoError) as info:
            src.read(5)
        assert 5 in _frame_named(info.value), info.value
        # random access to the damaged frame is refused too; the frames after it still read
        again = open_source(bad, video_backend=backend)
        np.testing.assert_array_equal(again.read(7), open_source(clean_avi, video_backend="pyav").read(7))
        with pytest.raises(VideoError, match="frame 5"):
            again.read(5)


def test_garbage_container_is_a_typed_error(tmp_path):
    """A file that is not a video at all: a VideoError from both readers (PyAV raised its own error before)."""
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for backend in ("opencv", "pyav"):
        if backend == "pyav":
            pytest.importorskip("av", reason="the PyAV reader needs PyAV")
        with pytest.raises(VideoError, match="noise.mp4"):
            _read_all(open_source(path, video_backend=backend))


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_half_truncated_image_in_a_folder_raises(tmp_path, ext):
    """Before: a JPEG cut in half decoded with a grey lower half (libjpeg pads it) and tracking went on."""
    paths = media.write_folder(tmp_path / "frames", media.clip_frames(4), ext)
    media.cut_in_half(paths[2])
    src = open_source(tmp_path / "frames")
    src.read(1)
    with pytest.raises(VideoError) as info:
        src.read(2)
    assert "frame 2" in str(info.value) and paths[2].name in str(info.value), info.value


def test_hidden_files_are_not_frames(tmp_path):
    """macOS AppleDouble files (``._0.jpg``) and dotfiles sit next to the frames; before they were read
    as frames (and failed, or shifted every index)."""
    paths = media.write_folder(tmp_path / "frames", media.clip_frames(3))
    (tmp_path / "frames" / "._00000.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    cv2.imwrite(str(tmp_path / "frames" / ".thumb.jpg"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "frames" / "sub.jpg").mkdir()
    src = open_source(tmp_path / "frames")
    assert [p.name for p in src.paths] == [p.name for p in paths]
    assert src.num_frames == 3


@pytest.mark.parametrize("kwargs, needle", [
    ({"start": -3}, "start"),
    ({"start": 100}, "start"),
    ({"start": True}, "start"),
    ({"start": 2.5}, "start"),
    ({"max_frames": -1}, "max_frames"),
    ({"max_frames": True}, "max_frames"),
    ({"start": 7, "reverse": True, "max_frames": -2}, "max_frames"),
])
def test_impossible_propagation_ranges_are_refused(kwargs, needle):
    """Before: an empty generator (nothing tracked, no error) or a crash inside range()."""
    frames = media.clip_frames(8)
    tracker = track(FakeModel(), frames, **OPTS)
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    with pytest.raises(InputError, match=needle):
        list(tracker.propagate(**kwargs))


def test_iterable_shorter_than_announced_raises():
    """num_frames=10 announced, 6 given: before, the tracker stopped quietly after 6 frames."""
    frames = media.clip_frames(6)
    tracker = track(FakeModel(), iter(frames), num_frames=10, **OPTS)
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    with pytest.raises(VideoError, match="frame 6") as info:
        list(tracker.propagate())
    assert not isinstance(info.value, EndOfVideo)
