"""The video tracker: prompts on any frame, propagation forward and backward, typed state.

It follows the official SAM2VideoPredictor step by step (see bank.py for memory selection):

* a prompt on a frame the object was not tracked on makes it a *conditioning* frame, decoded
  without memory (multimask for 0..1 points); on a tracked frame it is a *correction*, decoded
  with the object's memory and its previous mask as input. Outputs wait as "pending" and join
  the bank when propagation starts; their memory is encoded (mask binarised) before the frame's
  features leave the one-frame feature cache, so a prompted frame is not decoded again for it;
* ``propagate`` tracks every object on every frame except its conditioning frames, whose
  prompted outputs are reused; all objects of a frame are batched (runners.py);
* ``propagate`` is a generator: results are yielded, never accumulated; the bank is pruned
  as the frontier moves (bank.py), and frames are decoded lazily from the source;
* while the networks run on one frame, a background thread reads and pre-processes the next
  one in the propagation order (``prefetch``, seekable sources only). The source is never read
  by two threads at once: any other read waits for that one first. A frame's read error is
  raised when that frame is tracked, as without the prefetch;
* a prompt computes everything first and records last, so a failed one (bad argument,
  unreadable frame, backend error) changes nothing; arguments are checked like the image API's
  (prompts.py); a one-pass source is never consumed to reach a prompt's frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

import numpy as np

from sam2edge.config import ModelConfig
from sam2edge.errors import InputError, VideoError
from sam2edge.processing import postprocess, validate
from sam2edge.runtime.preprocessing import make_preprocess
from sam2edge.runtime.video import mask_prompt, prompts
from sam2edge.runtime.video.bank import MemoryPolicy, ObjectMemory
from sam2edge.runtime.video.frames import EndOfVideo, FrameSource
from sam2edge.runtime.video.runners import LOW_RES, VideoRunners, use_multimask
from sam2edge.runtime.video.state import (
    NO_OBJ_SCORE,
    FrameFeatures,
    FrameResult,
    MaskPrompt,
    MemoryEntry,
    PointPrompt,
    VideoOptions,
)
from sam2edge.runtime.video.storage import STORAGE_DTYPES, store

log = logging.getLogger(__name__)
PAD_LABEL = -1


class VideoTracker:
    """Multi-object tracking over a frame source (see the module docstring)."""

    def __init__(self, nets: VideoRunners, source: FrameSource, config: ModelConfig, options: VideoOptions,
                 host_constants: dict[str, np.ndarray] | None = None, streaming: bool = False) -> None:
        if options.memory_dtype not in STORAGE_DTYPES:
            raise InputError(f"memory_dtype must be one of {STORAGE_DTYPES}, got {options.memory_dtype!r}")
        if options.retention not in ("window", "all"):
            raise InputError(f"retention must be 'window' or 'all', got {options.retention!r}")
        if not isinstance(options.prefetch, bool):
            raise InputError(f"prefetch must be True or False, got {options.prefetch!r}")
        self.nets = nets
        self.source = source
        self.config = config
        self.options = options
        self._host_constants = host_constants
        self._preprocess = make_preprocess(options.preprocessing, True, config.image_size)
        auto_cap = min(nets.max_memory_frames - (config.num_maskmem - 1),
                       nets.max_obj_ptrs - (config.max_obj_ptrs_in_encoder - 1))
        cap = options.max_cond_frames if options.max_cond_frames is not None else max(1, auto_cap)
        if cap < 1:
            raise InputError(f"max_cond_frames must be >= 1, got {cap}")
        self.policy = MemoryPolicy(config.num_maskmem, config.max_obj_ptrs_in_encoder, cap,
                                   config.use_signed_tpos_enc_to_obj_ptrs, options.retention, not streaming)
        self.num_frames = options.num_frames if options.num_frames is not None else source.num_frames
        self._objects: dict[int, ObjectMemory] = {}
        self._features: FrameFeatures | None = None
        self.frames_decoded = 0
        self._prefetch_after: tuple[int, int] | None = None  # (frame being tracked, the one to read next)
        self._prefetched: tuple[int, Future] | None = None  # the read in flight or done, not yet taken
        self._reader: ThreadPoolExecutor | None = None

    # -- properties ------------------------------------------------------------------------
    @property
    def obj_ids(self) -> list[int]:
        return list(self._objects)

    @property
    def video_hw(self) -> tuple[int, int]:
        if self.source.video_hw is None:
            self._features_for(0)
        assert self.source.video_hw is not None
        return self.source.video_hw

    def memory_bytes(self) -> int:
        """Bytes held by the memory bank of every object plus the cached frame features (not the
        one frame that propagation's prefetch may hold, read and pre-processed: 12 MB at 1024)."""
        feats = self._features
        cached = 0 if feats is None else sum(a.nbytes for a in (feats.image_embed, feats.high_res_0,
                                                                  feats.high_res_1, feats.vision_features))
        return cached + sum(o.nbytes for o in self._objects.values())

    def memory(self, obj_id: int) -> ObjectMemory:
        """The typed memory bank of one object (read-only use)."""
        return self._get(obj_id)

    # -- prompts ---------------------------------------------------------------------------
    # Every prompt computes first (frame, features, decoder) and records last: a failure anywhere
    # (bad argument, unreadable frame, backend error) leaves objects, prompts and outputs as they were.
    def add_points(self, frame_idx: int, obj_id: int, points: Any = None, labels: Any = None, box: Any = None,
                   clear_old_points: bool = True, normalize_coords: bool = True) -> FrameResult:
        """Clicks (and/or a box) for one object on one frame; returns every object's masks there.

        points [P,2] (x, y) and labels [P] (1 positive, 0 negative) in video pixels (or in [0,1]
        with ``normalize_coords=False``); box [4] (x0, y0, x1, y1) is placed before the clicks.
        ``clear_old_points=False`` appends to the clicks already on this frame.
        """
        frame_idx = self._frame_index(frame_idx)
        obj_id = validate.as_index(obj_id, "obj_id", low=None)
        if not clear_old_points and box is not None:
            raise InputError("box must come first: add it with clear_old_points=True (got a box with clear_old_points=False)")
        coords, labs = prompts.parse_clicks(points, labels, box)
        self._check_reachable(frame_idx)
        prompt = prompts.place(coords, labs, self._hw_for(frame_idx), self.config.image_size, not normalize_coords)
        obj = self._objects.get(obj_id) or ObjectMemory(obj_id, self.policy)
        if not clear_old_points:
            prompt = prompts.merged(obj.prompts.get(frame_idx), prompt)
        direction = obj.tracked.get(frame_idx)
        is_cond = direction is None
        prev = obj.lookup(frame_idx, is_cond)
        mask_in = None
        if prev is not None:
            if prev.low_res is None:
                log.warning("object %s: the previous mask on frame %d left the bounded memory bank; "
                            "decoding the clicks without it (retention='all' keeps it)", obj_id, frame_idx)
            else:
                mask_in = np.clip(prev.low_res, -32.0, 32.0)[None, None]
        feats = self._features_for(frame_idx)
        if is_cond:
            embed = feats.image_embed
        else:
            embed = self.nets.condition(feats, [obj.select(frame_idx, bool(direction), self.num_frames)])
        dec = self.nets.decode(embed, feats, prompt.coords[None], prompt.labels[None], mask_in,
                               use_multimask(prompt.num_points))
        entry = MemoryEntry(frame_idx, self._fill(dec.low_res)[0], dec.obj_ptr[0], float(dec.object_score[0]),
                            None, from_points=True)
        return self._record(obj, frame_idx, prompt, is_cond, entry)

    def add_box(self, frame_idx: int, obj_id: int, box: Any, points: Any = None, labels: Any = None,
                normalize_coords: bool = True) -> FrameResult:
        """A box (x0, y0, x1, y1) for one object on one frame, optionally with clicks."""
        return self.add_points(frame_idx, obj_id, points, labels, box=box, normalize_coords=normalize_coords)

    def add_mask(self, frame_idx: int, obj_id: int, mask: Any) -> FrameResult:
        """A mask [H,W] (bool or 0/1, any size; stretched to the model input) for one object."""
        frame_idx = self._frame_index(frame_idx)
        obj_id = validate.as_index(obj_id, "obj_id", low=None)
        full = mask_prompt.mask_to_input_size(mask, self.config.image_size)
        consts = mask_prompt.require_host_constants(self._host_constants)
        self._check_reachable(frame_idx)
        obj = self._objects.get(obj_id) or ObjectMemory(obj_id, self.policy)
        is_cond = obj.tracked.get(frame_idx) is None
        feats = self._features_for(frame_idx)
        dense = mask_prompt.mask_downsample(full, consts["mask_downsample.weight"], consts["mask_downsample.bias"])
        pad = np.zeros((1, 1, 2), np.float32), np.full((1, 1), PAD_LABEL, np.int32)
        dec = self.nets.decode(feats.vision_features, feats, pad[0], pad[1], dense, multimask=False)
        present = bool(full.any())
        ptr = dec.obj_ptr[0] if present else consts["no_obj_ptr"].reshape(-1).astype(np.float32)
        score = mask_prompt.MASK_LOGIT_SCALE * float(present) + mask_prompt.MASK_LOGIT_BIAS
        low = mask_prompt.mask_output_logits(full, LOW_RES)
        entry = MemoryEntry(frame_idx, self._fill(low[None])[0], ptr, score, None, from_points=True)
        return self._record(obj, frame_idx, MaskPrompt(int(full.sum())), is_cond, entry)

    def add_masks(self, frame_idx: int, records: Any, obj_ids: Any = None) -> FrameResult:
        """One new object per mask, e.g. the records of ``generate_masks`` on that frame.

        records: a list of records (dicts with a "segmentation" in any output mode: [H,W] bool,
        uncompressed or COCO RLE) or of [H,W] masks. obj_ids: one new id per record (default: the
        next free ids, counting up from the largest in use). Every mask and id is checked before
        any object is added, and a failure while adding removes the ones added: all or nothing.
        """
        from sam2edge.processing.amg import segmentation_to_mask

        frame_idx = self._frame_index(frame_idx)
        if isinstance(records, dict) or not isinstance(records, list | tuple) or not records:
            raise InputError(f"records must be a non-empty list of records or masks, got {type(records).__name__}")
        masks = [segmentation_to_mask(r["segmentation"] if isinstance(r, dict) else r) for r in records]  # 2-D bool
        ids = self._new_ids(len(masks), obj_ids)
        mask_prompt.require_host_constants(self._host_constants)
        self._check_reachable(frame_idx)
        result = None
        try:
            for obj_id, mask in zip(ids, masks):
                result = self.add_mask(frame_idx, obj_id, mask)
        except BaseException:
            for obj_id in ids:
                self._objects.pop(obj_id, None)
            raise
        assert result is not None
        return result

    def _new_ids(self, count: int, obj_ids: Any) -> list[int]:
        """``count`` distinct integer ids not in use (the next free ones when ``obj_ids`` is None)."""
        if obj_ids is None:
            first = max(self._objects, default=0) + 1
            return list(range(first, first + count))
        ids = list(obj_ids) if isinstance(obj_ids, list | tuple | np.ndarray) else [obj_ids]
        if len(ids) != count:
            raise InputError(f"obj_ids must hold one id per record ({count}), got {len(ids)}: {obj_ids!r}")
        ids = [validate.as_index(i, "obj_ids", low=None) for i in ids]
        if len(set(ids)) != len(ids) or set(ids) & set(self._objects):
            raise InputError(f"obj_ids must be {count} distinct ids not in use (in use: {self.obj_ids}), got {obj_ids!r}")
        return ids

    def _record(self, obj: ObjectMemory, frame_idx: int, prompt: PointPrompt | MaskPrompt, is_cond: bool,
                entry: MemoryEntry) -> FrameResult:
        """The last step of a prompt: the object (new or not) takes the prompt and its output."""
        self._objects.setdefault(obj.obj_id, obj)
        obj.record_prompt(frame_idx, prompt, is_cond, entry)
        return self._consolidate(frame_idx, is_cond)

    def clear_prompts(self, frame_idx: int, obj_id: int) -> FrameResult:
        """Remove one object's prompts on a frame (its output there becomes an ordinary one)."""
        frame_idx = self._frame_index(frame_idx)
        self._get(obj_id).clear_prompts(frame_idx)
        is_cond = any(frame_idx in o.pending[True] for o in self._objects.values())
        return self._consolidate(frame_idx, is_cond)

    def remove_object(self, obj_id: int, strict: bool = False) -> list[int]:
        """Forget an object entirely; returns the remaining object ids."""
        obj_id = validate.as_index(obj_id, "obj_id", low=None)  # True is not object 1
        if obj_id not in self._objects and strict:
            raise InputError(f"obj_id must be a known object {self.obj_ids}, got {obj_id}")
        self._objects.pop(obj_id, None)
        return self.obj_ids

    def reset(self) -> None:
        """Forget every object and prompt (the source and cached features stay)."""
        self._objects.clear()

    def close(self) -> None:
        self._drop_prefetched()  # waits for a read in flight: the source is closed after it
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None
        self.source.close()
        self._features = None

    def __enter__(self) -> VideoTracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- propagation -----------------------------------------------------------------------
    def propagate(self, start: int | None = None, reverse: bool = False,
                  max_frames: int | None = None) -> Iterator[FrameResult]:
        """Track all objects frame by frame; yields one FrameResult per frame.

        start: first frame (default: the earliest prompted frame); reverse: towards frame 0;
        max_frames: frames to track after ``start`` (as the official, ``start`` itself is extra).
        The arguments are checked here; the frames are read as the results are taken.
        """
        if start is not None:
            start = self._frame_index(start, "start")
        if max_frames is not None:
            max_frames = validate.as_index(max_frames, "max_frames")
        return self._propagate(start, bool(reverse), max_frames)

    def _propagate(self, start: int | None, reverse: bool, max_frames: int | None) -> Iterator[FrameResult]:
        self._commit()
        if start is None:
            start = min(o.first_cond_frame() for o in self._objects.values())  # type: ignore[type-var]
        order = iter(self._order(start, reverse, max_frames))
        frame_idx = next(order, None)
        while frame_idx is not None:
            following = next(order, None)
            if following is not None and self.options.prefetch and self.source.seekable:
                self._prefetch_after = (frame_idx, following)
            try:
                result = self.step(frame_idx, reverse)
            except EndOfVideo:
                if reverse:
                    raise
                return
            finally:
                self._prefetch_after = None
            yield result
            frame_idx = following

    def _order(self, start: int, reverse: bool, max_frames: int | None) -> Iterable[int]:
        if reverse:
            if not self.source.seekable:
                raise VideoError("reverse propagation needs a seekable source (file, folder or list)")
            end = max(start - (max_frames if max_frames is not None else start), 0)
            return range(start, end - 1, -1) if start > 0 else range(0)
        if self.num_frames is not None:
            end = min(start + (max_frames if max_frames is not None else self.num_frames), self.num_frames - 1)
            return range(start, end + 1)
        return range(start, start + max_frames + 1) if max_frames is not None else _count(start)

    def step(self, frame_idx: int, reverse: bool = False) -> FrameResult:
        """Track every object on one frame (after committing pending prompts)."""
        self._commit()
        objs = list(self._objects.values())
        run = [o for o in objs if frame_idx not in o.cond]
        tracked: dict[int, MemoryEntry] = {}
        if run:
            feats = self._features_for(frame_idx)
            sels = [o.select(frame_idx, reverse, self.num_frames) for o in run]
            embeds = self.nets.condition(feats, sels)
            n = len(run)
            pad_xy, pad_lab = np.zeros((n, 1, 2), np.float32), np.full((n, 1), PAD_LABEL, np.int32)
            dec = self.nets.decode(embeds, feats, pad_xy, pad_lab, None, use_multimask(0))
            mem = self.nets.encode_memory(feats, dec.low_res, np.zeros(n, bool), dec.object_score)
            filled = self._fill(dec.low_res)
            for i, o in enumerate(run):
                entry = MemoryEntry(frame_idx, filled[i], dec.obj_ptr[i], float(dec.object_score[i]),
                                    store(mem[i], self.options.memory_dtype), from_points=False)
                o.store_tracked(frame_idx, entry, reverse)
                tracked[o.obj_id] = entry
        for o in objs:
            if o.obj_id not in tracked:
                o.tracked.set(frame_idx, reverse)
        entries = [tracked.get(o.obj_id) or o.cond[frame_idx] for o in objs]
        result = self._result(frame_idx, [o.obj_id for o in objs], entries)
        for o in objs:
            o.prune(frame_idx)
        return result

    # -- internals ---------------------------------------------------------------------------
    def _commit(self) -> None:
        """Encode every pending output's memory, then move it into the bank (all objects or none)."""
        if not self._objects:
            raise InputError("no object has prompts yet: add points, a box or a mask first")
        for o in self._objects.values():
            if not o.cond and not o.pending[True]:
                raise InputError(f"object {o.obj_id} has no prompt on any frame; add points, a box or a mask")
        self._flush_pending()
        for frame in sorted({e.frame_idx for o in self._objects.values() for e in o.unencoded()}):
            self._flush_pending(self._features_for(frame))  # prompts whose frame left the feature cache
        for o in self._objects.values():
            o.commit()

    def _flush_pending(self, feats: FrameFeatures | None = None) -> None:
        """Run the memory encoder (binarised masks) for pending outputs on the cached frame."""
        feats = feats or self._features
        if feats is None:
            return
        todo = [e for o in self._objects.values() for e in o.unencoded() if e.frame_idx == feats.frame_idx]
        if not todo:
            return
        low = np.stack([e.low_res for e in todo])
        scores = np.array([e.object_score for e in todo], np.float32)
        mem = self.nets.encode_memory(feats, low, np.ones(len(todo), bool), scores)
        for e, m in zip(todo, mem):
            e.maskmem = store(m, self.options.memory_dtype)

    def _features_for(self, frame_idx: int) -> FrameFeatures:
        if self._features is not None and self._features.frame_idx == frame_idx:
            self._prefetch_next(frame_idx)
            return self._features
        image, hw = self._load(frame_idx)
        self._prefetch_next(frame_idx)
        feats = self.nets.encode(frame_idx, image, hw)
        self._flush_pending()  # the cached frame's pending memory needs its features: encode it before they go
        self._features = feats
        return feats

    def drop_features(self, frame_idx: int) -> None:
        """Forget the cached features of ``frame_idx`` (a stream frame that was taken back)."""
        if self._features is not None and self._features.frame_idx == frame_idx:
            self._flush_pending()
            self._features = None

    def _check_reachable(self, frame_idx: int) -> None:
        """A one-pass source is never consumed to reach a prompt's frame (see FrameSource.unreachable)."""
        if self._features is not None and self._features.frame_idx == frame_idx:
            return
        reason = self.source.unreachable(frame_idx)
        if reason:
            raise VideoError(f"frame_idx {frame_idx}: {reason}")

    def _load(self, frame_idx: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Frame ``frame_idx`` pre-processed, and the video's (H, W): the prefetched one when it is
        that frame (its read error is raised here), else read now, after any read in flight."""
        ahead = self._prefetched
        if ahead is not None and ahead[0] == frame_idx:
            self._prefetched = None
            return ahead[1].result()
        self._drop_prefetched()  # another frame: never read the source from two threads
        return self._read(frame_idx)

    def _read(self, frame_idx: int) -> tuple[np.ndarray, tuple[int, int]]:
        rgb = self.source.read(frame_idx)
        self.frames_decoded += 1
        hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        return self._preprocess(rgb), hw

    def _prefetch_next(self, frame_idx: int) -> None:
        """Once the frame being tracked is loaded, start reading the next one (it is read while
        this one is encoded and tracked)."""
        after = self._prefetch_after
        if after is not None and after[0] == frame_idx:
            self._prefetch_after = None
            self._start_prefetch(after[1])

    def _start_prefetch(self, frame_idx: int) -> None:
        self._drop_prefetched()
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sam2edge-frame-reader")
        self._prefetched = (frame_idx, self._reader.submit(self._read, frame_idx))

    def _drop_prefetched(self) -> None:
        """Forget the prefetched frame, after its read has finished (its outcome is not wanted)."""
        ahead, self._prefetched = self._prefetched, None
        if ahead is not None:
            wait_futures([ahead[1]])

    def _fill(self, low_res: np.ndarray) -> np.ndarray:
        area = self.options.fill_hole_area
        if area and area > 0:
            return postprocess.fill_holes_in_mask_scores(low_res[:, None], area)[:, 0]
        return low_res

    def _consolidate(self, frame_idx: int, is_cond: bool) -> FrameResult:
        objs = list(self._objects.values())
        return self._result(frame_idx, [o.obj_id for o in objs], [o.lookup(frame_idx, is_cond) for o in objs])

    def _result(self, frame_idx: int, ids: list[int], entries: list[MemoryEntry | None]) -> FrameResult:
        hw = self.video_hw
        low = np.full((len(ids), LOW_RES, LOW_RES), NO_OBJ_SCORE, np.float32)
        scores = np.full((len(ids),), NO_OBJ_SCORE, np.float32)
        for i, e in enumerate(entries):
            if e is not None and e.low_res is not None:
                low[i], scores[i] = e.low_res, e.object_score
        masks = postprocess.upsample_masks(low[:, None], hw, self.options.mask_threshold)[:, 0]
        return FrameResult(frame_idx, tuple(ids), masks, low, scores, hw)

    def _get(self, obj_id: Any) -> ObjectMemory:
        obj_id = validate.as_index(obj_id, "obj_id", low=None)
        try:
            return self._objects[obj_id]
        except KeyError:
            raise InputError(f"obj_id must be a known object {self.obj_ids}, got {obj_id}") from None

    def _frame_index(self, frame_idx: Any, name: str = "frame_idx") -> int:
        """A frame index of this video (0 <= index < num_frames when the length is known)."""
        where = "outside the video" + (f" (frames 0..{self.num_frames - 1})" if self.num_frames is not None else "")
        return validate.as_index(frame_idx, name, 0, self.num_frames, where)

    def _hw_for(self, frame_idx: int) -> tuple[int, int]:
        if self.source.video_hw is None:
            self._features_for(frame_idx)
        assert self.source.video_hw is not None
        return self.source.video_hw


def _count(start: int) -> Iterator[int]:
    i = start
    while True:
        yield i
        i += 1
