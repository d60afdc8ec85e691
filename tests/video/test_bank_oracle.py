"""Memory selection against the official ``SAM2Base._prepare_memory_conditioned_features``.

The official method is run on a hand-made output dict whose memory features and object
pointers carry their frame index as value, with its memory attention replaced by a stub
that captures the memory it was given. From that we read which frames it used, with which
temporal rows, which pointers and their temporal encodings, and compare with our bank's
selection for the same state (forward and reverse, pointer windows cut by the video's ends,
conditioning frames in the future, and the no-pointer case).
"""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.config import get_config
from sam2edge.runtime.video.bank import MemoryPolicy, ObjectMemory
from sam2edge.runtime.video.state import MemoryEntry
from sam2edge.runtime.video.storage import store
from tests.oracle import official_model, requires_oracle

torch = pytest.importorskip("torch")
pytestmark = [requires_oracle, pytest.mark.oracle]

NAME = "sam2.1_hiera_tiny"
SIDE = 2  # a 2x2 feature grid is enough to read the selection back

# (conditioning frames in insertion order, tracked frames, current frame, reverse, num_frames)
CASES = [
    ((0,), range(1, 10), 10, False, 30),
    ((0,), range(1, 26), 26, False, 30),
    ((0,), range(1, 7), 7, False, 8),
    ((3, 12), [*range(0, 3), *range(4, 12), *range(13, 21)], 10, False, 30),
    ((20,), [*range(21, 30), *range(10, 20)], 15, True, 30),
    ((20,), range(21, 30), 19, True, 30),
    ((2,), (), 9, True, 10),  # reverse pass starting after the only prompt: no pointer
    ((5,), (), 0, False, 10),  # forward pass starting before the only prompt: no pointer
    ((9, 1, 4), (0, 2, 3, 5, 7, 8, 11, 14), 6, False, 16),
    ((9, 1, 4), (0, 2, 3, 5, 7, 8, 11, 14), 6, True, 16),
    ((0,), (3, 5, 8, 13, 20, 30), 31, False, 40),
]


def _official_selection(model, cond, tracked, frame, reverse, num_frames, monkeypatch):
    def entry(t):
        return {"maskmem_features": torch.full((1, 64, SIDE, SIDE), float(t)),
                "maskmem_pos_enc": [torch.zeros(1, 64, SIDE, SIDE)],
                "obj_ptr": torch.full((1, 256), t + 0.5)}

    output_dict = {"cond_frame_outputs": {t: entry(t) for t in cond},
                   "non_cond_frame_outputs": {t: entry(t) for t in tracked if t not in cond}}
    captured = {}

    def stub(curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens):
        captured.update(memory=memory[:, 0, 0], pos=memory_pos[:, 0], k=num_obj_ptr_tokens)
        return curr[0]

    monkeypatch.setattr(model.memory_attention, "forward", stub)
    feats = [torch.zeros(SIDE * SIDE, 1, 256)]
    with torch.inference_mode():
        model._prepare_memory_conditioned_features(frame, False, feats, feats, [(SIDE, SIDE)], output_dict,
                                                   num_frames, reverse)
    k = captured["k"]
    spatial = captured["memory"][: len(captured["memory"]) - k]
    frames = [int(v) for v in spatial[:: SIDE * SIDE]]
    tpos_table = model.maskmem_tpos_enc.detach().reshape(-1, 64)
    pos = captured["pos"][: len(captured["pos"]) - k][:: SIDE * SIDE]
    tpos = [int(torch.argmin((tpos_table - p).abs().sum(-1))) for p in pos]
    ptr_frames = [int(v - 0.5) for v in captured["memory"][len(captured["memory"]) - k :: 4]]
    ptr_pos = captured["pos"][len(captured["pos"]) - k :: 4]
    return frames, tpos, ptr_frames, ptr_pos


def _our_selection(cond, tracked, frame, reverse, num_frames):
    cfg = get_config(NAME)
    mem = ObjectMemory(1, MemoryPolicy(cfg.num_maskmem, cfg.max_obj_ptrs_in_encoder, 16,
                                       cfg.use_signed_tpos_enc_to_obj_ptrs, "all"))

    def entry(t):
        return MemoryEntry(t, np.zeros((4, 4), np.float32), np.full(256, t + 0.5, np.float32), 1.0,
                           store(np.zeros((64, SIDE, SIDE), np.float32), "bfloat16"))

    for t in cond:
        mem.cond[t] = entry(t)
    for t in tracked:
        if t not in cond:
            mem.non_cond[t] = entry(t)
    return mem.select(frame, reverse, num_frames)


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_selection_matches_official(case, monkeypatch):
    model = official_model(NAME)
    frames, tpos, ptr_frames, ptr_pos = _official_selection(model, *case, monkeypatch)
    sel = _our_selection(*case)
    assert [e.frame_idx for e in sel.entries] == frames
    assert list(sel.tpos) == tpos
    assert [int(p[0] - 0.5) for p in sel.ptrs] == ptr_frames
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    with torch.inference_mode():
        ours_pos = model.obj_ptr_tpos_proj(get_1d_sine_pe(torch.tensor(sel.ptr_offsets, dtype=torch.float32), dim=256))
    diff = float((ours_pos - ptr_pos).abs().max()) if len(ptr_frames) else 0.0
    print(f"\n{case[:1]} t={case[2]} rev={case[3]}: {len(frames)} memory frames, {len(ptr_frames)} pointers, "
          f"pointer-pos diff {diff:.1e}")
    assert ours_pos.shape[0] == len(ptr_frames)
    assert diff == 0.0
