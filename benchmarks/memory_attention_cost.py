"""Memory attention alone: matmul FLOPs, the fp32 matmul bound, and timings side by side.

FLOPs counted (multiply-adds x 2; N = 4096 queries, D = 256, C = 64 memory channels, H = 2048,
F memory frames, P = 4 x pointers tokens, M = F*N + P keys), per layer:

* official (per object): self-attention q/k/v/out projections 4*2ND², scores + weighted sum
  2*2N²D; cross-attention q/out 2*2ND², k/v 2*2MCD, scores + weighted sum 2*2NMD; MLP 2*2NDH.
* ours: q and k projections are 2D wide (RoPE's pair-swapped rows), self-attention otherwise as
  above; cross-attention q 2N·D·2D, spatial keys 2FN·C·2D, pointer keys 2PCD, scores 2NMD,
  weighted sum over the 64-channel memory 2NMC, composed out projection 2NCD; MLP 2*2NDH.
  Layer 0's self-attention and cross-attention queries are counted once per call (shared by
  the objects), everything else once per object. This is the exported (narrow) form, the one
  ONNX Runtime and TensorRT run. Eager PyTorch runs the fused SDPA form (256-channel values:
  the official's attention FLOPs), and is still held to this bound, the least work any of our
  forms does, so its ratio includes that extra work.

Element-wise work (softmax, RoPE, LayerNorm, residuals) is not counted: the bound is FLOPs / the
fp32 GEMM rate measured in the same run, with the same clock. This machine's GEMM rate drifts by
up to 2x over minutes (a shared host: 101-165 GFLOP/s in five probes a minute apart), so a probe
taken once at the start of a run says little about a row measured half an hour later: each row
times a GEMM of the score shape in torch and in ONNX Runtime (``GemmProbe``) interleaved with its
attention calls, and its bound uses the median over repeats of the faster library's rate.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np

N, D, C, H = 4096, 256, 64, 2048
LAYERS = 4
GEMM_TORCH, GEMM_ORT = "gemm probe (torch)", "gemm probe (onnxruntime)"


def _mm(rows: int, inner: int, cols: int) -> int:
    return 2 * rows * inner * cols


def memory_attention_gflop(frames: int, ptr_tokens: int, objects: int = 1, form: str = "ours") -> float:
    """Matmul GFLOP of one memory-attention call (see the module docstring)."""
    m = frames * N + ptr_tokens
    mlp = 2 * _mm(N, D, H)
    if form == "official":
        sa = 4 * _mm(N, D, D) + 2 * _mm(N, N, D)
        ca = 2 * _mm(N, D, D) + 2 * _mm(m, C, D) + 2 * _mm(N, m, D)
        return objects * LAYERS * (sa + ca + mlp) / 1e9
    if form != "ours":
        raise ValueError(f"form must be 'ours' or 'official', got {form!r}")
    sa = 2 * _mm(N, D, 2 * D) + 2 * _mm(N, D, D) + 2 * _mm(N, N, D)
    ca_q = _mm(N, D, 2 * D)
    ca_rest = _mm(frames * N, C, 2 * D) + _mm(ptr_tokens, C, D) + _mm(N, m, D) + _mm(N, m, C) + _mm(N, C, D)
    shared = sa + ca_q
    per_object = (LAYERS - 1) * shared + LAYERS * (ca_rest + mlp)
    return (shared + objects * per_object) / 1e9


def gemm_peak_gflops(repeats: int = 5, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best fp32 GEMM rate of this process's torch threads (4096x256 @ 256x4096 and 2048³ products)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    best = 0.0
    for (m, k, n) in ((4096, 256, 4096), (2048, 2048, 2048)):
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        a @ b
        for _ in range(repeats):
            t0 = clock()
            a @ b
            best = max(best, _mm(m, k, n) / (clock() - t0) / 1e9)
    return best


class GemmProbe:
    """fp32 GEMMs of the cross-attention score shape ([4096, 256] @ [256, 4096], 8.6 GFLOP each), in
    torch and in ONNX Runtime (MLAS), with this process's torch thread count, timed among the calls
    they are compared with. A repeat's rate is the faster library's: neither is a peak on its own
    (MLAS ran our attention's matmuls faster than torch's bare GEMM on this machine)."""

    SHAPE, TIMES = (N, D, N), 4

    def __init__(self, seed: int = 0) -> None:
        import torch

        from benchmarks.ort_profile import matmul_session

        gen = torch.Generator().manual_seed(seed)
        m, k, n = self.SHAPE
        self.a, self.b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        self.session, self.feeds = matmul_session(m, k, n, torch.get_num_threads())

    def torch(self) -> None:
        for _ in range(self.TIMES):
            self.a @ self.b

    def onnxruntime(self) -> None:
        for _ in range(self.TIMES):
            self.session.run(None, self.feeds)

    def gflops(self, ms: float) -> float:
        return self.TIMES * _mm(*self.SHAPE) / (ms / 1000) / 1e9


def attention_feeds(frames: int, pointers: int, objects: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """memory_attention artifact inputs (random memory and pointers, conditioning frame first)."""
    rng = np.random.default_rng(seed)
    return {"vision_features": rng.standard_normal((1, D, 64, 64)).astype(np.float32),
            "memory": rng.standard_normal((objects, frames, C, 64, 64)).astype(np.float32),
            "memory_tpos": np.array([6] + [i % 6 for i in range(frames - 1)], np.int32),
            "obj_ptrs": rng.standard_normal((objects, pointers, D)).astype(np.float32),
            "obj_ptr_offsets": (np.arange(pointers) / 15).astype(np.float32)}


def official_attention_call(official, feeds: dict[str, np.ndarray]) -> Callable[[], object]:
    """The official memory attention as its predictor calls it: one object at a time, memory and
    pointer tokens concatenated, positions = sine + temporal encodings."""
    import torch
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    with torch.inference_mode():
        vis = torch.from_numpy(feeds["vision_features"])
        curr = vis.flatten(2).permute(2, 0, 1)  # [N,1,D]
        curr_pos = official.image_encoder.neck.position_encoding(vis[:, :1]).flatten(2).permute(2, 0, 1).to(curr.dtype)
        mem = torch.from_numpy(feeds["memory"])
        sine = official.memory_encoder.position_encoding(mem[0, :1]).flatten(2).permute(2, 0, 1)  # [N,1,C]
        spatial_pos = [sine + official.maskmem_tpos_enc[int(t)] for t in feeds["memory_tpos"]]
        ptrs = torch.from_numpy(feeds["obj_ptrs"])
        offsets = torch.from_numpy(feeds["obj_ptr_offsets"])
        ptr_pos = official.obj_ptr_tpos_proj(get_1d_sine_pe(offsets, dim=D)).repeat_interleave(D // C, 0)[:, None]
        memory_pos = torch.cat([*spatial_pos, ptr_pos])
        per_object = [torch.cat([*(f.flatten(1).T[:, None] for f in mem[b]), ptrs[b].reshape(-1, 1, C)])
                      for b in range(mem.shape[0])]

    def run() -> object:
        with torch.inference_mode():
            return [official.memory_attention(curr=[curr], curr_pos=[curr_pos], memory=m, memory_pos=memory_pos,
                                              num_obj_ptr_tokens=ptrs.shape[1] * (D // C)) for m in per_object]

    return run


def bench_memory_attention(runners: dict, official, lengths: list[int], pointers: int, repeats: int,
                           objects: int = 1, clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    """Interleaved medians of our runners (``{label: Runner}``), the official and a GEMM probe, per
    memory length; the bound uses the probe's median rate (see the module docstring)."""
    rows = []
    probe = GemmProbe()
    for frames in lengths:
        feeds = attention_feeds(frames, pointers, objects)
        calls: dict[str, Callable[[], object]] = {label: (lambda r=r, f=feeds: r.infer(f)) for label, r in runners.items()}
        if official is not None:
            calls["official"] = official_attention_call(official, feeds)
        calls[GEMM_TORCH], calls[GEMM_ORT] = probe.torch, probe.onnxruntime
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for fn in calls.values():
                fn()
            times: dict[str, list[float]] = {label: [] for label in calls}
            for _ in range(repeats):
                for label, fn in calls.items():
                    t0 = clock()
                    fn()
                    times[label].append(1000 * (clock() - t0))
        ptr_tokens = pointers * (D // C)
        ours_gflop = memory_attention_gflop(frames, ptr_tokens, objects)
        by_library = {label: [probe.gflops(ms) for ms in times.pop(label)] for label in (GEMM_TORCH, GEMM_ORT)}
        rates = [max(pair) for pair in zip(*by_library.values())]
        gemm = statistics.median(rates)
        # Each of our calls against the bound from the probe of the same repeat, then the median.
        paired = {label: statistics.median(ms * rate / (1000 * ours_gflop) for ms, rate in zip(times[label], rates))
                  for label in runners}
        row = {"memory_frames": frames, "pointers": pointers, "objects": objects,
               "ms": {label: statistics.median(t) for label, t in times.items()},
               "gflop_ours": ours_gflop, "gflop_official": memory_attention_gflop(frames, ptr_tokens, objects, "official"),
               "gemm_gflops": gemm, "gemm_gflops_range": [min(rates), max(rates)],
               "gemm_gflops_by_library": {label: statistics.median(r) for label, r in by_library.items()},
               "bound_ms": 1000 * ours_gflop / gemm, "ours_over_bound": paired, "load_avg": os.getloadavg()[0]}
        rows.append(row)
        print({k: v for k, v in row.items()}, flush=True)
    return rows
