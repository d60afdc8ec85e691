"""Smoke check: the memory networks export to ONNX and ONNX Runtime matches PyTorch.

Not the export pipeline (sam2edge/export owns that): this only shows that the model code is
export-friendly — real-valued RoPE, memory frames F and pointer tokens K dynamic (K = 0
included), constant tables stored once. Random weights; no official package needed.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx", reason="onnx not installed (pip install sam2edge[export])")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install sam2edge[export])")

from sam2edge.model.memory_attention import MemoryAttention  # noqa: E402
from sam2edge.model.memory_encoder import MemoryEncoder  # noqa: E402
from sam2edge.model.testing import randomize_parameters  # noqa: E402

TOL = 1e-4
CASES = [(1, 0), (2, 4), (7, 16)]  # (memory frames F, pointer tokens K)
ATTN_INPUTS = ["curr", "memory_spatial", "memory_spatial_pos", "obj_ptrs", "obj_ptrs_pos"]
ENC_INPUTS = ["pix_feat", "mask"]


class _AttentionWithBuiltinPos(torch.nn.Module):
    """MemoryAttention with curr_pos taken from its constant buffer (what an artifact would do)."""

    def __init__(self, net: MemoryAttention) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        curr: torch.Tensor,
        memory_spatial: torch.Tensor,
        memory_spatial_pos: torch.Tensor,
        obj_ptrs: torch.Tensor,
        obj_ptrs_pos: torch.Tensor,
    ) -> torch.Tensor:
        return self.net(curr, None, memory_spatial, memory_spatial_pos, obj_ptrs, obj_ptrs_pos)


@functools.lru_cache(maxsize=1)
def _attention() -> _AttentionWithBuiltinPos:
    return _AttentionWithBuiltinPos(randomize_parameters(MemoryAttention(), seed=3)).eval()


def _attention_inputs(frames: int, ptr_tokens: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(frames * 100 + ptr_tokens)
    s = frames * 4096
    shapes = [(1, 4096, 256), (1, s, 64), (1, s, 64), (1, ptr_tokens, 64), (1, ptr_tokens, 64)]
    return tuple(torch.randn(shape, generator=gen) for shape in shapes)


@functools.lru_cache(maxsize=len(CASES))
def _attention_reference(frames: int, ptr_tokens: int) -> np.ndarray:
    with torch.no_grad():
        return _attention()(*_attention_inputs(frames, ptr_tokens)).numpy()


def _export_attention(path: Path, dynamo: bool) -> None:
    example = _attention_inputs(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            from torch.export import Dim

            batch, frames, ptrs = Dim("batch", min=1, max=8), Dim("frames", min=1, max=16), Dim("ptrs", min=0, max=64)
            mem, ptr = {0: batch, 1: 4096 * frames}, {0: batch, 1: ptrs}
            shapes = ({0: batch}, mem, mem, ptr, ptr)
            torch.onnx.export(
                _attention(), example, str(path), input_names=ATTN_INPUTS, output_names=["out"], dynamo=True, dynamic_shapes=shapes
            )
        else:
            mem, ptr = {0: "batch", 1: "memory_tokens"}, {0: "batch", 1: "ptr_tokens"}
            axes = {
                "curr": {0: "batch"},
                "memory_spatial": mem,
                "memory_spatial_pos": mem,
                "obj_ptrs": ptr,
                "obj_ptrs_pos": ptr,
                "out": {0: "batch"},
            }
            torch.onnx.export(
                _attention(),
                example,
                str(path),
                input_names=ATTN_INPUTS,
                output_names=["out"],
                opset_version=17,
                dynamo=False,
                dynamic_axes=axes,
            )


def _stored_bytes(path: Path) -> int:
    """Bytes of all tensors in the graph: initializers plus Constant nodes (weights + tables)."""
    model = onnx.load(str(path))
    total = sum(np.prod(t.dims) * 4 for t in model.graph.initializer)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            total += np.prod(node.attribute[0].t.dims) * 4
    return int(total)


@pytest.mark.parametrize("dynamo", [pytest.param(False, id="legacy-opset17"), pytest.param(True, id="dynamo", marks=pytest.mark.slow)])
def test_memory_attention_onnx(tmp_path: Path, dynamo: bool) -> None:
    torch.set_num_threads(2)
    path = tmp_path / "memory_attention.onnx"
    _export_attention(path, dynamo)
    params = sum(p.numel() for p in _attention().parameters()) * 4
    buffers = sum(b.numel() for b in _attention().buffers()) * 4
    stored = _stored_bytes(path)
    print(
        f"[onnx memory_attention dynamo={dynamo}] tensors stored {stored / 1e6:.1f} MB "
        f"(weights {params / 1e6:.1f} MB + tables {buffers / 1e6:.1f} MB)"
    )
    assert stored <= 1.1 * (params + buffers), "constant tables duplicated in the graph"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    for frames, ptr_tokens in CASES:
        feeds = {n: t.numpy() for n, t in zip(ATTN_INPUTS, _attention_inputs(frames, ptr_tokens))}
        (out,) = session.run(None, feeds)
        diff = float(np.abs(out - _attention_reference(frames, ptr_tokens)).max())
        print(f"[onnx memory_attention dynamo={dynamo}] F={frames} K={ptr_tokens}: max|ort - torch|={diff:.2e}")
        assert out.shape == (1, 4096, 256)
        assert diff <= TOL


@pytest.mark.parametrize("dynamo", [pytest.param(False, id="legacy-opset17"), pytest.param(True, id="dynamo", marks=pytest.mark.slow)])
def test_memory_encoder_onnx(tmp_path: Path, dynamo: bool) -> None:
    torch.set_num_threads(2)
    net = randomize_parameters(MemoryEncoder(), seed=4).eval()
    gen = torch.Generator().manual_seed(0)

    def inputs(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        mask = torch.sigmoid(4 * torch.randn(batch, 1, 1024, 1024, generator=gen)) * 20 - 10
        return torch.randn(batch, 256, 64, 64, generator=gen), mask

    path = tmp_path / "memory_encoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            from torch.export import Dim

            batch = Dim("batch", min=1, max=16)
            torch.onnx.export(
                net,
                inputs(2),
                str(path),
                input_names=ENC_INPUTS,
                output_names=["features", "pos"],
                dynamo=True,
                dynamic_shapes=({0: batch}, {0: batch}),
            )
        else:
            axes = {n: {0: "batch"} for n in ENC_INPUTS + ["features", "pos"]}
            torch.onnx.export(
                net,
                inputs(2),
                str(path),
                input_names=ENC_INPUTS,
                output_names=["features", "pos"],
                opset_version=17,
                dynamo=False,
                dynamic_axes=axes,
            )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = inputs(batch)
        with torch.no_grad():
            ref = [t.numpy() for t in net(*x)]
        outs = session.run(None, {n: t.numpy() for n, t in zip(ENC_INPUTS, x)})
        diffs = [float(np.abs(o - r).max()) for o, r in zip(outs, ref)]
        print(f"[onnx memory_encoder dynamo={dynamo}] B={batch}: features {diffs[0]:.2e}, pos {diffs[1]:.2e}")
        assert outs[0].shape == (batch, 64, 64, 64) and outs[1].shape == (batch, 64, 64, 64)
        assert max(diffs) <= TOL
