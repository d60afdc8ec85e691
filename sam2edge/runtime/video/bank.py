"""The per-object memory bank: what each frame can attend to, and a bounded retention policy.

Selection reproduces the official SAM2VideoPredictor (``_prepare_memory_conditioned_features``
with memory_temporal_stride_for_eval = 1, only_obj_ptrs_in_the_past_for_eval = True):

* memory frames: every conditioning (prompted) frame, temporal row ``num_maskmem - 1``; then
  the frames ``t-6 .. t-1`` (``t+6 .. t+1`` in reverse) that have a tracked output, row
  ``k - 1`` for the frame ``k`` steps back. Conditioning frames are not repeated there.
* object pointers: conditioning frames not in the future (direction-aware), offset ``|t - c|``;
  then tracked frames ``t-1, t-2, ...`` up to ``min(num_frames, 16) - 1`` steps back (stopping at
  the video's ends), offset = steps back. Offsets are divided by ``min(num_frames, 16) - 1``.

Retention (``retention="window"``), so memory stays flat however long the video:

* conditioning frames: at most ``max_cond_frames`` per object. When one more is committed, the
  oldest one except the first (the initial prompt, the anchor of the object's identity) is
  demoted to an ordinary tracked frame, which then ages out like any other. The cap defaults
  to what the memory-attention profile admits (16 memory frames - 6 recent frames = 10).
* tracked frames keep their memory features and mask only within ``num_maskmem - 1`` frames
  of an *anchor*, and their object pointer within ``max_obj_ptrs - 1``; beyond that they are
  dropped. Anchors: the frame being tracked, and (offline tracker only) the prompted and
  corrected frames, so a propagation restarted from a prompt sees exactly what the official
  predictor would. A streaming tracker only anchors at the current frame.
* ``retention="all"`` keeps everything, like the official predictor (memory grows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sam2edge.runtime.video.state import MaskPrompt, MemoryEntry, PointPrompt


@dataclass(frozen=True)
class MemoryPolicy:
    num_maskmem: int = 7
    max_obj_ptrs: int = 16
    max_cond_frames: int = 10
    signed_ptr_tpos: bool = True
    retention: str = "window"  # "window" | "all"
    anchor_windows: bool = True  # offline: keep outputs around prompted frames

    @property
    def mem_radius(self) -> int:
        return self.num_maskmem - 1

    @property
    def ptr_radius(self) -> int:
        return self.max_obj_ptrs - 1


@dataclass(frozen=True)
class MemorySelection:
    """What one object attends to on one frame (conditioning frames first, as the official)."""

    entries: tuple[MemoryEntry, ...]
    tpos: tuple[int, ...]  # maskmem_tpos_enc row of each memory frame
    ptrs: tuple[np.ndarray, ...]  # [256] each
    ptr_offsets: tuple[float, ...]  # normalised temporal offsets (float32 values)

    @property
    def layout(self) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Objects with equal layouts can share one memory-attention call."""
        return self.tpos, self.ptr_offsets


class TrackedFrames:
    """Which frames an object was tracked on, and in which direction (1 byte per frame)."""

    def __init__(self) -> None:
        self._base = 0
        self._flags = bytearray()

    def get(self, frame: int) -> bool | None:
        """None if never tracked, else whether it was tracked in reverse."""
        i = frame - self._base
        if i < 0 or i >= len(self._flags) or self._flags[i] == 0:
            return None
        return self._flags[i] == 2

    def set(self, frame: int, reverse: bool) -> None:
        i = frame - self._base
        if i < 0:  # trimmed region (streaming never goes back)
            return
        if i >= len(self._flags):
            self._flags.extend(bytes(i + 1 - len(self._flags)))
        self._flags[i] = 2 if reverse else 1

    def discard(self, frame: int) -> None:
        i = frame - self._base
        if 0 <= i < len(self._flags):
            self._flags[i] = 0

    def trim_before(self, frame: int) -> None:
        drop = max(0, min(frame - self._base, len(self._flags)))
        if drop:
            del self._flags[:drop]
            self._base += drop

    def __len__(self) -> int:
        return len(self._flags)


@dataclass
class ObjectMemory:
    """Prompts, outputs and tracking record of one object."""

    obj_id: int
    policy: MemoryPolicy
    cond: dict[int, MemoryEntry] = field(default_factory=dict)
    non_cond: dict[int, MemoryEntry] = field(default_factory=dict)
    pending: dict[bool, dict[int, MemoryEntry]] = field(default_factory=lambda: {False: {}, True: {}})
    prompts: dict[int, PointPrompt | MaskPrompt] = field(default_factory=dict)
    corrected: list[int] = field(default_factory=list)
    tracked: TrackedFrames = field(default_factory=TrackedFrames)

    # -- interaction ------------------------------------------------------------------------
    def lookup(self, frame: int, is_cond: bool) -> MemoryEntry | None:
        """The latest output on ``frame``: pending of that kind, then committed (official order)."""
        hit = self.pending[is_cond].get(frame)
        if hit is None:
            hit = self.cond.get(frame)
        if hit is None:
            hit = self.non_cond.get(frame)
        return hit

    def record_prompt(self, frame: int, prompt: PointPrompt | MaskPrompt, is_cond: bool, entry: MemoryEntry) -> None:
        """A prompt and the output decoded for it (pending until the next propagation commits it).

        The tracker calls this only once the output exists, so a failed prompt records nothing."""
        self.prompts[frame] = prompt
        self.pending[is_cond][frame] = entry

    def unencoded(self) -> list[MemoryEntry]:
        return [e for d in self.pending.values() for e in d.values() if e.maskmem is None]

    def commit(self) -> None:
        """Move pending outputs into the bank (the official ``propagate_in_video_preflight``)."""
        for is_cond in (False, True):
            target = self.cond if is_cond else self.non_cond
            for frame, entry in self.pending[is_cond].items():
                assert entry.maskmem is not None, "pending memory must be encoded before commit"
                target[frame] = entry
                if not is_cond and frame not in self.corrected:
                    self.corrected.append(frame)
            self.pending[is_cond].clear()
        for frame in self.cond:
            self.non_cond.pop(frame, None)
        del self.corrected[: max(0, len(self.corrected) - self.policy.max_cond_frames)]
        while len(self.cond) > self.policy.max_cond_frames:
            frames = list(self.cond)
            victim = frames[1] if len(frames) > 1 else frames[0]
            self.non_cond[victim] = self.cond.pop(victim)

    def clear_prompts(self, frame: int) -> None:
        """Forget the prompts on ``frame``; a conditioning output there becomes an ordinary one."""
        self.prompts.pop(frame, None)
        self.pending[False].pop(frame, None)
        self.pending[True].pop(frame, None)
        entry = self.cond.pop(frame, None)
        if entry is not None:
            self.non_cond[frame] = entry
            self.tracked.discard(frame)

    # -- selection --------------------------------------------------------------------------
    def select(self, frame: int, reverse: bool, num_frames: int | None) -> MemorySelection:
        n = self.policy.num_maskmem
        entries: list[MemoryEntry] = []
        tpos: list[int] = []
        for entry in self.cond.values():
            entries.append(entry)
            tpos.append(n - 1)
        for t_pos in range(1, n):
            back = n - t_pos
            entry = self.non_cond.get(frame + back if reverse else frame - back)
            if entry is not None and entry.maskmem is not None:
                entries.append(entry)
                tpos.append(back - 1)
        max_ptrs = self.policy.max_obj_ptrs if num_frames is None else min(num_frames, self.policy.max_obj_ptrs)
        norm = np.float32(max(max_ptrs - 1, 1))
        ptrs: list[np.ndarray] = []
        offsets: list[float] = []
        for t, entry in self.cond.items():
            if (t >= frame) if reverse else (t <= frame):
                diff = (frame - t) * (-1 if reverse else 1) if self.policy.signed_ptr_tpos else abs(frame - t)
                ptrs.append(entry.obj_ptr)
                offsets.append(float(np.float32(diff) / norm))
        for back in range(1, max_ptrs):
            t = frame + back if reverse else frame - back
            if t < 0 or (num_frames is not None and t >= num_frames):
                break
            entry = self.non_cond.get(t)
            if entry is not None:
                ptrs.append(entry.obj_ptr)
                offsets.append(float(np.float32(back) / norm))
        return MemorySelection(tuple(entries), tuple(tpos), tuple(ptrs), tuple(offsets))

    def first_cond_frame(self) -> int | None:
        return min(self.cond) if self.cond else None

    # -- retention --------------------------------------------------------------------------
    def store_tracked(self, frame: int, entry: MemoryEntry, reverse: bool) -> None:
        self.non_cond[frame] = entry
        self.tracked.set(frame, reverse)

    def prune(self, frontier: int) -> None:
        """Drop what no later frame can attend to (see the module docstring)."""
        if self.policy.retention == "all":
            return
        anchors = [frontier]
        if self.policy.anchor_windows:
            anchors += list(self.cond) + self.corrected
        mem_r, ptr_r = self.policy.mem_radius, self.policy.ptr_radius
        for frame in list(self.non_cond):
            dist = min(abs(frame - a) for a in anchors)
            if dist > ptr_r:
                del self.non_cond[frame]
            elif dist > mem_r and self.non_cond[frame].maskmem is not None:
                entry = self.non_cond[frame]
                entry.maskmem = None
                entry.low_res = None  # type: ignore[assignment]
        if not self.policy.anchor_windows:
            # Streaming: nothing before the pointer window can be prompted or attended again.
            self.tracked.trim_before(frontier - ptr_r)
            for frame in [f for f in self.prompts if f < frontier - ptr_r and f not in self.cond]:
                del self.prompts[frame]

    @property
    def nbytes(self) -> int:
        entries = [*self.cond.values(), *self.non_cond.values(), *self.pending[False].values(), *self.pending[True].values()]
        return sum(e.nbytes for e in entries) + len(self.tracked)
