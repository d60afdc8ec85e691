"""Frame sources, video pre-processing, bf16 storage and the mask-prompt helpers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from sam2edge.errors import VideoError
from sam2edge.runtime.preprocessing import make_preprocess
from sam2edge.runtime.video import FolderSource, IterableSource, SequenceSource, VideoFileSource, open_source
from sam2edge.runtime.video.frames import EndOfVideo
from sam2edge.runtime.video.storage import bfloat16_bits_to_float32, float32_to_bfloat16_bits, store
from tests.video.clip import make_clip


def _write_video(path: Path, frames: list[np.ndarray]) -> None:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def test_video_file_random_access_matches_sequential(tmp_path):
    clip = make_clip(12, 48, 64)
    path = tmp_path / "clip.avi"
    _write_video(path, clip.frames)
    seq = VideoFileSource(path)
    assert seq.num_frames == 12 and seq.video_hw == (48, 64)
    sequential = [seq.read(i) for i in range(12)]
    rnd = open_source(str(path))
    for i in (7, 3, 11, 0, 5, 6, 9):
        np.testing.assert_array_equal(rnd.read(i), sequential[i])
    err = np.abs(sequential[4].astype(int) - clip.frames[4]).mean()
    swapped = np.abs(sequential[4][..., ::-1].astype(int) - clip.frames[4]).mean()
    assert err < 12 and err < swapped / 2, f"decoded frames should be RGB (error {err:.1f}, BGR {swapped:.1f})"
    with pytest.raises(EndOfVideo):
        rnd.read(12)


def test_folder_source_orders_numerically(tmp_path):
    clip = make_clip(11, 24, 32)
    for i, f in enumerate(clip.frames):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    src = open_source(str(tmp_path))
    assert isinstance(src, FolderSource) and src.num_frames == 11
    assert [p.name for p in src.paths][:3] == ["0.png", "1.png", "2.png"] and src.paths[-1].name == "10.png"
    np.testing.assert_array_equal(src.read(10), clip.frames[10])


def test_sequence_and_iterable_sources():
    clip = make_clip(3, 16, 16)
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in clip.frames]
    np.testing.assert_array_equal(SequenceSource(bgr, "bgr").read(1), clip.frames[1])
    it = open_source(iter(clip.frames), "rgb")
    assert isinstance(it, IterableSource)
    np.testing.assert_array_equal(it.read(2), clip.frames[2])  # skips 0 and 1
    with pytest.raises(VideoError, match="already consumed"):
        it.read(0)
    with pytest.raises(EndOfVideo):
        it.read(3)
    assert it.num_frames == 3
    with pytest.raises(VideoError, match="neither a file nor a folder"):
        open_source("/nonexistent/video.mp4")


def test_pil_preprocessing_is_the_official_video_loader(tmp_path):
    """Bit-exact with sam2.utils.misc._load_img_as_tensor + the loader's normalisation."""
    pytest.importorskip("PIL")
    torch = pytest.importorskip("torch")
    misc = pytest.importorskip("sam2.utils.misc")
    from PIL import Image

    # A small frame (resized up), and a 1024x1024 one (not resized) holding every uint8 value in
    # every channel, so each entry of the per-channel table that replaces the arithmetic is compared.
    every_value = np.stack([np.roll(np.tile(np.arange(256, dtype=np.uint8), (1024, 4)), k, axis=1) for k in (0, 7, 99)], -1)
    for i, frame in enumerate([make_clip(1, 90, 120).frames[0], every_value]):
        Image.fromarray(frame).save(tmp_path / f"{i}.png")
        img, _, _ = misc._load_img_as_tensor(str(tmp_path / f"{i}.png"), 1024)
        ref = torch.zeros(1, 3, 1024, 1024)
        ref[0] = img
        ref -= torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        ref /= torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        ours = make_preprocess("exact", video=True)(frame)
        print(f"\npil preprocessing {frame.shape} max diff vs official loader: {np.abs(ours - ref.numpy()).max():.1e}")
        np.testing.assert_array_equal(ours, ref.numpy())
        assert ours.flags.c_contiguous
    assert {int(v) for v in np.unique(every_value[..., 2])} == set(range(256))
    assert make_preprocess("opencv", video=True)(frame).shape == (1, 3, 1024, 1024)


def test_bfloat16_storage_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = np.concatenate([(rng.standard_normal(10000) * 10.0 ** rng.integers(-30, 30, 10000)).astype(np.float32),
                        np.array([0.0, -0.0, np.inf, -np.inf, 1e-40, 3.0e38, 1.00390625, 1.01171875], np.float32)])
    ours = bfloat16_bits_to_float32(float32_to_bfloat16_bits(x))
    ref = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(ours, ref)
    assert np.isnan(bfloat16_bits_to_float32(float32_to_bfloat16_bits(np.array([np.nan], np.float32))))[0]
    assert store(x, "bfloat16").nbytes == x.nbytes // 2 and store(x, "float16").nbytes == x.nbytes // 2
    np.testing.assert_array_equal(store(x, "float32").array(), x)


def test_mask_prompt_helpers_match_torch():
    torch = pytest.importorskip("torch")
    from torch.nn import functional as F

    from sam2edge.runtime.video.mask_prompt import mask_downsample, mask_output_logits, mask_to_input_size

    rng = np.random.default_rng(1)
    small = np.zeros((90, 120), bool)
    small[20:60, 30:100] = True
    full = mask_to_input_size(small, 1024)
    ref_full = F.interpolate(torch.from_numpy(small.astype(np.float32))[None, None], size=(1024, 1024),
                             mode="bilinear", align_corners=False, antialias=True) >= 0.5
    assert (full != ref_full[0, 0].numpy()).sum() == 0
    low = mask_output_logits(full, 256)
    ref_low = F.interpolate(torch.from_numpy(full * 20 - 10)[None, None], size=(256, 256), mode="bilinear",
                            align_corners=False, antialias=True)[0, 0].numpy()
    print(f"\nmask logits max diff {np.abs(low - ref_low).max():.1e}")
    assert np.abs(low - ref_low).max() < 1e-5
    conv = torch.nn.Conv2d(1, 1, 4, 4)
    w, b = rng.standard_normal((1, 1, 4, 4)).astype(np.float32), rng.standard_normal(1).astype(np.float32)
    conv.weight.data, conv.bias.data = torch.from_numpy(w), torch.from_numpy(b)
    with torch.no_grad():
        ref = conv(torch.from_numpy(full)[None, None]).numpy()
    assert np.abs(mask_downsample(full, w, b) - ref).max() < 1e-5


def test_pyav_source_matches_opencv(tmp_path):
    pytest.importorskip("av", reason="PyAV is optional (pip install 'sam2edge[video]')")
    from sam2edge.runtime.video import PyAVSource

    clip = make_clip(6, 48, 64)
    path = tmp_path / "clip.avi"
    _write_video(path, clip.frames)
    ref = VideoFileSource(path)
    src = open_source(str(path), video_backend="pyav")
    assert isinstance(src, PyAVSource)
    for i in (0, 3, 1, 5):
        assert np.abs(src.read(i).astype(int) - ref.read(i)).max() <= 2
