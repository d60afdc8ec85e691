"""Streaming memory stays flat: 10,000 frames with cheap runners, a short stream with the real ones.

10,000-frame test — what is faked and why: all four runners are the cheap ones of
tests/video/fakes.py (same specs, same Runner contract, same output shapes and dtypes, so the
host allocates exactly what it does with a real backend). On this CPU the real networks take
seconds per frame (the encoder runs at 1024x1024 and memory attention over up to 7 x 4096
memory tokens per object), so 10,000 real frames would take days; the networks are
stateless functions of their inputs, so the stream's memory is decided by the host code
under test here: the memory bank, the feature cache, pre-processing and results. Frames are
16 x 16 and still pre-processed to 1024 x 1024 for real.

The short test runs the real PyTorch runners (random weights) for 22 frames, past the
16-frame pointer window and the 7-frame memory window, and checks the bank stops growing.
"""

from __future__ import annotations

import os
import resource
import time
import tracemalloc

import numpy as np
import pytest

from sam2edge.runtime.video import stream
from tests.video.fakes import FakeModel

LONG = int(os.environ.get("SAM2EDGE_STREAM_FRAMES", "10000"))


def _frames(n: int, size: int = 16):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for i in range(n):
        yield np.roll(base, i % size, axis=1)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@pytest.mark.parametrize("length", [1000, pytest.param(LONG, marks=pytest.mark.slow)], ids=["1k", "long"])
def test_long_stream_memory_is_flat(length):
    """Memory after frame 10% of the stream vs at its end (the 10,000-frame run is marked slow:
    about 20 minutes on a busy 2-core CPU, mostly the real 1024x1024 pre-processing)."""
    model = FakeModel()
    frames = _frames(length)
    live = stream(model, next(frames), {1: {"box": [2, 2, 10, 10]}, 2: {"points": [[12, 12]], "labels": [1]}},
                  input_color_format="rgb", preprocessing="opencv")
    tracemalloc.start()
    checkpoints = {}
    steady = [np.inf, -np.inf]  # min / max bank bytes after frame 100 (no per-frame list: it would grow)
    started = time.perf_counter()
    try:
        for i, frame in enumerate(frames, start=1):
            res = live.track(frame)
            assert res.frame_idx == i
            held = live.memory_bytes()
            if i > 100:
                steady[0], steady[1] = min(steady[0], held), max(steady[1], held)
            if i % (length // 10) == 0:
                current, peak = tracemalloc.get_traced_memory()
                checkpoints[i] = (current / 2**20, peak / 2**20, _rss_mb(), held / 2**20)
                tracemalloc.reset_peak()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - started
    print(f"\n{length} frames in {seconds:.0f} s ({1000 * seconds / length:.1f} ms/frame, fake runners)")
    print("frame   traced MB (now / peak since last)   max RSS MB   bank+features MB")
    for i, (cur, peak, rss, held) in checkpoints.items():
        print(f"{i:6d}   {cur:8.2f} / {peak:8.2f}   {rss:10.1f}   {held:8.2f}")
    first, last = checkpoints[min(checkpoints)], checkpoints[max(checkpoints)]
    # The bank fills within 16 frames; after that only its 1-byte-per-frame tracking flags (trimmed) may move.
    assert steady[1] - steady[0] < 4096, f"bank moves: {steady[0]} .. {steady[1]} bytes"
    assert last[1] <= first[1] + 1.0, f"traced peak grew from {first[1]:.1f} to {last[1]:.1f} MB"
    assert last[0] <= first[0] + 1.0, f"traced memory grew from {first[0]:.1f} to {last[0]:.1f} MB"
    assert last[2] <= first[2] + 32.0, f"RSS grew from {first[2]:.0f} to {last[2]:.0f} MB"


@pytest.mark.slow
def test_real_runner_stream_bank_plateaus():
    torch = pytest.importorskip("torch")
    from sam2edge.backends.torch_runner import make_torch_runners
    from sam2edge.config import get_config
    from sam2edge.model import build_model
    from sam2edge.model.testing import randomize_parameters
    from sam2edge.runtime.image.predictor import SAM2

    torch.set_num_threads(2)
    net = randomize_parameters(build_model("sam2.1_hiera_tiny"), 0)
    model = SAM2(make_torch_runners(net, "cpu"), get_config("sam2.1_hiera_tiny"))
    frames = _frames(23, 32)
    live = stream(model, next(frames), {1: {"box": [4, 4, 20, 20]}}, input_color_format="rgb", preprocessing="opencv")
    sizes, entries = [], []
    for frame in frames:
        live.track(frame)
        bank = live.tracker.memory(1)
        sizes.append(live.memory_bytes())
        entries.append((len(bank.non_cond), sum(e.maskmem is not None for e in bank.non_cond.values())))
    print("\nbank entries (pointers, memory frames) per frame:", entries)
    print("bank+features MB per frame:", [round(s / 2**20, 2) for s in sizes])
    policy = live.tracker.policy  # kept: frames within 15 (pointers) / 6 (memory) of the current one
    assert entries[-1] == (policy.ptr_radius + 1, policy.mem_radius + 1) == entries[-3]
    assert max(sizes[16:]) - min(sizes[16:]) < 4096
