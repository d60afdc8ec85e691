"""Host logic of the tracker with cheap runners on the real specs (tests/video/fakes.py).

No network runs here: these tests check the API, batching, laziness, the bounded memory
policy and the error messages. Parity with the official predictor is in
test_tracker_oracle.py.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from sam2edge.errors import InputError, VideoError
from sam2edge.runtime.video import FrameResult, IterableSource, SequenceSource, track
from tests.video.clip import make_clip
from tests.video.fakes import FakeModel

OPTS = {"input_color_format": "rgb", "preprocessing": "numpy"}


@pytest.fixture()
def clip():
    return make_clip(8, 48, 64)


def _calls(model: FakeModel, name: str) -> int:
    return model.runners[name].count


def test_api_shapes_and_unpacking(clip):
    model = FakeModel()
    tracker = track(model, clip.frames, **OPTS)
    res = tracker.add_points(0, 1, points=[clip.center(1, 0)], labels=[1])
    assert isinstance(res, FrameResult) and res.obj_ids == (1,) and res.masks.shape == (1, 48, 64)
    assert res.masks.dtype == bool and res.low_res_logits.shape == (1, 256, 256)
    res = tracker.add_box(2, 2, box=clip.boxes[2][2])
    assert res.obj_ids == (1, 2)
    assert not res.masks[0].any(), "object 1 has no output on frame 2 yet"
    frames = []
    for frame_idx, obj_ids, masks in tracker.propagate():
        assert obj_ids == [1, 2] and masks.shape == (2, 48, 64)
        frames.append(frame_idx)
    assert frames == list(range(8))
    assert [r.frame_idx for r in tracker.propagate(start=5, reverse=True, max_frames=2)] == [5, 4, 3]
    assert [r.frame_idx for r in tracker.propagate(start=6, max_frames=10)] == [6, 7]
    assert res.video_logits().shape == (2, 48, 64)


def test_objects_batched_per_frame(clip):
    """4 objects prompted on one frame: per tracked frame one encoder call, one memory-attention
    call with batch 4, one memory-encoder call with batch 4, one decoder call with 4 embeddings."""
    model = FakeModel()
    tracker = track(model, clip.frames, **OPTS)
    for obj in range(4):
        tracker.add_points(0, obj, points=[[10 + 10 * obj, 20]], labels=[1])
    before = {n: _calls(model, n) for n in model.runners}
    results = list(tracker.propagate(start=0, max_frames=3))
    assert len(results) == 4 and all(r.masks.shape[0] == 4 for r in results)
    tracked_frames = 3  # frame 0 reuses the prompted outputs
    assert _calls(model, "image_encoder") - before["image_encoder"] == tracked_frames
    attn = list(model.runners["memory_attention"].calls)[-tracked_frames:]
    assert _calls(model, "memory_attention") - before["memory_attention"] == tracked_frames
    assert all(c["memory"][0] == 4 for c in attn)
    enc = list(model.runners["memory_encoder"].calls)[-tracked_frames:]
    assert all(c["mask_logits"][0] == 4 for c in enc)
    dec_calls = _calls(model, "prompt_decoder") - before["prompt_decoder"]
    assert tracker.nets.decoder_batches_images, "the prompt_decoder spec takes one embedding per prompt"
    assert dec_calls == tracked_frames
    dec = list(model.runners["prompt_decoder"].calls)[-tracked_frames:]
    assert all(c["image_embed"][0] == 4 and c["point_coords"][0] == 4 for c in dec)


@pytest.mark.parametrize(("backend", "one_per_call"), [("torch-cpu", True), ("onnxruntime-cpu", False),
                                                     ("onnxruntime-cuda", False)])
def test_objects_per_call_follows_the_backend(clip, backend, one_per_call):
    """On eager PyTorch on the CPU the same 4 objects go through memory attention, the decoder and
    the memory encoder one object per call (cheaper per object there); ONNX Runtime keeps the
    batches. The results are the same either way."""
    def run(model):
        tracker = track(model, clip.frames, **OPTS)
        for obj in range(4):
            tracker.add_points(0, obj, points=[[10 + 10 * obj, 20]], labels=[1])
        before = {n: _calls(model, n) for n in model.runners}
        results = list(tracker.propagate(start=0, max_frames=3))
        return results, {n: _calls(model, n) - before[n] for n in model.runners}

    batched, batched_calls = run(FakeModel())
    model = FakeModel()
    for runner in model.runners.values():
        runner.backend = backend
    results, calls = run(model)
    tracked_frames, encoded = 3, 4  # the memory of the prompted frame 0 is encoded too
    assert batched_calls == {"image_encoder": tracked_frames, "memory_attention": tracked_frames,
                             "prompt_decoder": tracked_frames, "memory_encoder": encoded}
    per = 4 if one_per_call else 1
    assert calls == {"image_encoder": tracked_frames, "memory_attention": per * tracked_frames,
                     "prompt_decoder": per * tracked_frames, "memory_encoder": per * encoded}
    for name, key in [("memory_attention", "memory"), ("prompt_decoder", "point_coords"),
                      ("memory_encoder", "mask_logits")]:
        made = list(model.runners[name].calls)[-calls[name]:]  # those of the propagation
        assert {c[key][0] for c in made} == {1 if one_per_call else 4}, name
    for a, b in zip(batched, results, strict=True):
        assert a.obj_ids == b.obj_ids and np.array_equal(a.masks, b.masks)
        assert np.array_equal(a.low_res_logits, b.low_res_logits)


def test_groups_follow_memory_layout(clip):
    """Objects prompted on different frames have different memory layouts: one call per layout."""
    model = FakeModel()
    tracker = track(model, clip.frames, **OPTS)
    tracker.add_points(0, 1, points=[[10, 10]], labels=[1])
    tracker.add_points(0, 2, points=[[30, 10]], labels=[1])
    tracker.add_points(3, 3, points=[[50, 30]], labels=[1])
    list(tracker.propagate(start=0, max_frames=1))  # frames 0 and 1
    attn = list(model.runners["memory_attention"].calls)
    # frame 0: object 3 only (objects 1, 2 reuse their prompt); frame 1: {1, 2} share a layout, 3 alone
    assert [c["memory"][0] for c in attn] == [1, 2, 1]


@pytest.mark.parametrize("prefetch", [False, True])
def test_each_frame_decoded_once_and_released(clip, prefetch):
    """Offline forward tracking decodes every frame exactly once and keeps none of them (with the
    prefetch, the next frame may be held while the background thread reads it)."""
    decoded: dict[int, int] = {}
    refs: dict[int, weakref.ref] = {}

    class CountingSource(SequenceSource):  # "decodes": every read makes a new array
        def read(self, idx):
            decoded[idx] = decoded.get(idx, 0) + 1
            frame = super().read(idx).copy()
            refs[idx] = weakref.ref(frame)
            return frame

    model = FakeModel()
    tracker = track(model, CountingSource(clip.frames, "rgb"), prefetch=prefetch, **OPTS)
    tracker.add_points(0, 1, points=[clip.center(1, 0)], labels=[1])
    tracker.add_box(0, 2, box=clip.boxes[2][0])
    for r in tracker.propagate():
        gc.collect()
        held = [i for i, ref in refs.items() if ref() is not None and not (prefetch and i == r.frame_idx + 1)]
        assert not held, f"decoded frames {held} are still held at frame {r.frame_idx}"
    assert decoded == dict.fromkeys(range(8), 1)


def test_stream_from_generator_decodes_once_and_holds_nothing(clip):
    decodes: dict[int, int] = {}
    refs: list[weakref.ref] = []

    def decode(i: int) -> np.ndarray:  # stands for decoding a camera frame into a new array
        decodes[i] = decodes.get(i, 0) + 1
        frame = clip.frames[i].copy()
        refs.append(weakref.ref(frame))
        return frame

    def camera():
        for i in range(len(clip.frames)):
            yield decode(i)  # no local keeps the frame while the generator is suspended

    model = FakeModel()
    frames = camera()
    stream = model_stream(model, next(frames), {1: {"box": clip.boxes[1][0]}, 2: {"points": [clip.center(2, 0)],
                                                                                   "labels": [1]}})
    assert stream.first_result.obj_ids == (1, 2)
    n = 1
    for frame in frames:
        res = stream.track(frame)
        del frame
        gc.collect()
        assert res.frame_idx == n and res.masks.shape == (2, 48, 64)
        assert all(r() is None for r in refs), "the stream holds a frame after track() returned"
        n += 1
    assert decodes == dict.fromkeys(range(8), 1)


def model_stream(model, first, prompts, **kw):
    from sam2edge.runtime.video import stream

    return stream(model, first, prompts, **{**OPTS, **kw})


def test_stream_corrections_and_new_objects(clip):
    model = FakeModel()
    stream = model_stream(model, clip.frames[0], {1: {"points": [clip.center(1, 0)], "labels": [1]}})
    stream.track(clip.frames[1])
    res = stream.add_points(1, [clip.center(1, 1)], [1])  # correction on a tracked frame
    assert res.obj_ids == (1,)
    res = stream.add_box(2, clip.boxes[2][1])  # a new object mid-stream
    assert res.obj_ids == (1, 2)
    res = stream.track(clip.frames[2])
    assert res.obj_ids == (1, 2) and res.masks.any(axis=(1, 2)).all()
    bank = stream.tracker.memory(1)
    assert 1 in bank.non_cond and bank.non_cond[1].from_points, "the correction is committed as a clicked frame"
    assert stream.remove_object(1) == [2]
    assert stream.track(clip.frames[3]).obj_ids == (2,)


def test_hole_filling_is_configurable(clip):
    model = FakeModel()
    filled = track(model, clip.frames, fill_hole_area=8, **OPTS).add_points(0, 1, [[32.0, 24.0]], [1])
    raw = track(model, clip.frames, fill_hole_area=0, **OPTS).add_points(0, 1, [[32.0, 24.0]], [1])
    # the fake decoder leaves a one-pixel hole at the click (256-grid (128, 128))
    assert raw.low_res_logits[0, 128, 128] < 0 < filled.low_res_logits[0, 128, 128]
    np.testing.assert_allclose(np.delete(raw.low_res_logits.ravel(), 128 * 256 + 128),
                               np.delete(filled.low_res_logits.ravel(), 128 * 256 + 128))


def test_bounded_bank_over_a_long_clip():
    model = FakeModel()
    n = 120
    frames = [np.full((16, 16, 3), i % 255, np.uint8) for i in range(n)]
    tracker = track(model, frames, **OPTS)
    tracker.add_points(0, 1, [[8.0, 8.0]], [1])
    tracker.add_points(60, 1, [[8.0, 8.0]], [1])  # a second prompt: an anchor in the middle
    sizes = []
    for r in tracker.propagate():
        bank = tracker.memory(1)
        kept_mem = sum(e.maskmem is not None for e in bank.non_cond.values())
        assert kept_mem <= 6 + 2 * 6 * 2, f"frame {r.frame_idx}: {kept_mem} memory frames kept"
        assert len(bank.non_cond) <= 15 + 2 * 15 * 2 + 2
        sizes.append(tracker.memory_bytes())
    # after the last anchor's window is filled, the bank stops growing (1 byte/frame of tracking flags)
    assert max(sizes[-20:]) <= max(sizes[80:100]) + 100, "memory grows with the clip length"
    # a restart from the prompt at 60 sees exactly the frames the official predictor would
    sel = tracker.memory(1).select(59, True, n)
    assert [e.frame_idx for e in sel.entries] == [0, 60, 65, 64, 63, 62, 61]


def test_retention_all_keeps_everything():
    model = FakeModel()
    frames = [np.zeros((16, 16, 3), np.uint8)] * 40
    tracker = track(model, frames, retention="all", **OPTS)
    tracker.add_points(0, 1, [[8.0, 8.0]], [1])
    list(tracker.propagate())
    assert len(tracker.memory(1).non_cond) == 39


def test_cond_frame_cap_keeps_first_and_latest():
    model = FakeModel()
    frames = [np.zeros((16, 16, 3), np.uint8)] * 20
    tracker = track(model, frames, max_cond_frames=3, **OPTS)
    for f in (0, 2, 4, 6, 8):
        tracker.add_points(f, 1, [[8.0, 8.0]], [1])
    list(tracker.propagate(max_frames=0))
    bank = tracker.memory(1)
    assert list(bank.cond) == [0, 6, 8]
    assert {2, 4} <= set(bank.non_cond), "evicted prompts stay as ordinary memories"


def test_auto_cond_cap_fits_the_memory_attention_profile(clip):
    tracker = track(FakeModel(), clip.frames, **OPTS)
    assert tracker.policy.max_cond_frames == 16 - 6


def test_clear_prompts_and_reset(clip):
    model = FakeModel()
    tracker = track(model, clip.frames, **OPTS)
    tracker.add_points(0, 1, [[10.0, 10.0]], [1])
    tracker.add_points(0, 2, [[30.0, 10.0]], [1])
    res = tracker.clear_prompts(0, 2)
    assert not res.masks[1].any()
    with pytest.raises(InputError, match="object 2 has no prompt"):
        list(tracker.propagate())
    assert tracker.remove_object(2) == [1]
    assert len(list(tracker.propagate())) == 8
    tracker.reset()
    assert tracker.obj_ids == []
    with pytest.raises(InputError, match="no object has prompts"):
        list(tracker.propagate())


def test_input_errors(clip):
    tracker = track(FakeModel(), clip.frames, **OPTS)
    with pytest.raises(InputError, match="points and labels"):
        tracker.add_points(0, 1, points=[[1, 2]])
    with pytest.raises(InputError, match="labels must be 1"):
        tracker.add_points(0, 1, points=[[1, 2]], labels=[5])
    with pytest.raises(InputError, match="outside the video"):
        tracker.add_points(8, 1, points=[[1, 2]], labels=[1])
    with pytest.raises(InputError, match="box must come first"):
        tracker.add_points(0, 1, box=[0, 0, 5, 5], clear_old_points=False)
    with pytest.raises(InputError, match="memory_dtype"):
        track(FakeModel(), clip.frames, memory_dtype="int8", **OPTS)


def test_iterable_source_is_one_pass(clip):
    tracker = track(FakeModel(), iter(clip.frames), **OPTS)
    assert isinstance(tracker.source, IterableSource) and tracker.num_frames is None
    tracker.add_points(0, 1, [[10.0, 10.0]], [1])
    assert [r.frame_idx for r in tracker.propagate()] == list(range(8)), "stops at the end of the iterable"
    with pytest.raises(VideoError, match="seekable"):
        list(tracker.propagate(start=5, reverse=True))
    with pytest.raises(VideoError, match="already consumed"):
        tracker.add_points(2, 1, [[10.0, 10.0]], [1])


def test_missing_memory_runners_are_named(clip):
    from sam2edge.errors import BackendUnavailableError

    model = FakeModel()
    del model.runners["memory_encoder"]
    with pytest.raises(BackendUnavailableError, match="memory_encoder"):
        track(model, clip.frames)


def test_mask_prompt(clip):
    model = FakeModel()
    tracker = track(model, clip.frames, **OPTS)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    res = tracker.add_mask(0, 1, mask)
    assert res.object_scores[0] == 10.0
    assert abs(int(res.masks[0].sum()) - int(mask.sum())) <= 0.1 * mask.sum()
    empty = tracker.add_mask(1, 2, np.zeros((48, 64), bool))
    assert empty.object_scores[1] == -10.0 and not empty.masks[1].any()
    assert len(list(tracker.propagate())) == 8


def test_torch_predictor_gets_its_memory_runners(clip):
    """A PyTorch predictor loaded with only the image artifacts still tracks: the memory runners
    are built from the model its decoder runner holds."""
    pytest.importorskip("torch")
    from sam2edge.backends.torch_runner import make_torch_runners
    from sam2edge.config import get_config
    from sam2edge.model import build_model
    from sam2edge.runtime.image.predictor import SAM2
    from sam2edge.runtime.video import video_runners

    net = build_model("sam2.1_hiera_tiny")
    pred = SAM2(make_torch_runners(net, "cpu", artifacts=("image_encoder", "prompt_decoder")),
                get_config("sam2.1_hiera_tiny"))
    runners = video_runners(pred)
    assert set(runners) == {"image_encoder", "prompt_decoder", "memory_attention", "memory_encoder"}
    assert runners["memory_attention"].module.model is net and runners["memory_attention"].backend == "torch-cpu"
