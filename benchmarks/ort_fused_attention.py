"""Experiment: ONNX Runtime's fused CPU attention kernel in place of our exported attention.

    python benchmarks/ort_fused_attention.py [--onnx DIR] [--repeats 5] [--threads 2]

Our exported graphs are standard ONNX (what TensorRT parses); their attention is plain: per chunk
of queries MatMul(q, Transpose(K)) -> Softmax -> MatMul(., V), chunks concatenated. ONNX Runtime's
CPU provider has ``com.microsoft.MultiHeadAttention``, which for float32 without mask, bias or
cache runs MLAS flash attention (tiles of queries and keys in the L2 cache, a running softmax: no
score matrix in memory). Queries and keys may be wider than values (256 vs 64 in SAM2's
cross-attention). This script rewrites an export's image encoder and memory attention with
``fuse_attention`` (below) and times the two graphs side by side: same inputs, one process, calls
interleaved, medians, their ratio, the largest difference between the outputs, the load average.

Cases: the image encoder on one 1024x1024 image (hiera_t: 12 attention blocks, 3 global); memory
attention with 16 object pointers at 1, 4 and 7 memory frames for one object and 4 frames for 4
objects. ``--onnx DIR``: an export folder (default: random hiera_tiny weights exported into a
temporary folder first, a few minutes). Writes benchmarks/results/ort_fused_attention.json / .md.

What it found (ONNX Runtime 1.31.1, 2 threads, 2-core Xeon VM, 2026-12-01, load average 1.0-2.0
with only this script running): the image encoder 2158 -> 2061 ms (1.05x); memory attention
0.99x, 0.98x, 0.93x at 1, 4, 7 memory frames and 0.94x for 4 objects at 4 frames: MLAS's
small-tile GEMMs lose what skipping the score matrix saves. Per block (synthetic graphs of
Hiera's shapes) it wins on stage 1-2 windows and on global attention (288 -> 248 ms per global
block) and loses on stage 3's 14x14 windows (29 -> 37 ms). With the other core busy (a CI run
beside it) the fused memory attention was 19-27% faster. Too little on a quiet CPU to ship a
second file per artifact; worth re-running with newer ONNX Runtime releases. Outputs agree to
3.6e-05 (encoder, values up to 29) and 3e-06 (memory attention).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, machine, write_report  # noqa: E402
from benchmarks.memory_attention_cost import attention_feeds  # noqa: E402

ORT_DOMAIN = "com.microsoft"


def _attr(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _core(softmax: Any, producer: dict[str, Any], consumers: dict[str, list[Any]]) -> tuple[str, str, str, Any] | None:
    """(q, keys transposed, values, output MatMul) when ``softmax`` is the middle of
    MatMul(q, Kt) -> Softmax(last axis) -> MatMul(., V), each result used once."""
    if _attr(softmax, "axis", -1) != -1:
        return None
    scores = producer.get(softmax.input[0])
    if scores is None or scores.op_type != "MatMul" or len(consumers.get(scores.output[0], [])) != 1:
        return None
    users = consumers.get(softmax.output[0], [])
    if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[0] != softmax.output[0]:
        return None
    return scores.input[0], scores.input[1], users[0].input[1], users[0]


def _made(name: str, op: str, producer: dict[str, Any], perm: list[int] | None = None) -> Any:
    """The node of type ``op`` (with ``perm``, for a Transpose) that produces ``name``, or None."""
    node = producer.get(name)
    if node is None or node.op_type != op or (perm is not None and list(_attr(node, "perm", [])) != perm):
        return None
    return node


def _split_heads(name: str, kind: str, producer: dict[str, Any], values: dict[str, np.ndarray]) -> tuple[str, list[int], int, int] | None:
    """(x, the [G, N, heads * d] shape of x's elements, heads, d) for a 4-D attention operand cut from x.

    ``kind`` 'q' / 'v': ``name`` is [G, heads, N, d]: Transpose(Reshape(x, [G, N, heads, d]), (0, 2, 1, 3)),
    or with one head Reshape(x, [G, 1, N, d]). 'k': ``name`` is the keys transposed, [G, heads, d, N]:
    Transpose(Reshape(x, [G, N, heads, d]), (0, 2, 3, 1)), or Transpose(Reshape(x, [G, 1, N, d]), (0, 1, 3, 2)).
    x itself may have another rank (Hiera's pooled queries are [G, h, w, C]).
    """
    forms = [((0, 2, 3, 1) if kind == "k" else (0, 2, 1, 3), False), ((0, 1, 3, 2) if kind == "k" else None, True)]
    for perm, one_head in forms:
        if perm is None:
            reshape = _made(name, "Reshape", producer)
        else:
            transpose = _made(name, "Transpose", producer, list(perm))
            reshape = transpose and _made(transpose.input[0], "Reshape", producer)
        if reshape is None or reshape.input[1] not in values:
            continue
        shape = [int(v) for v in values[reshape.input[1]].reshape(-1)]
        if len(shape) != 4 or (one_head and shape[1] != 1):
            continue
        g, n, heads, d = (shape[0], shape[2], 1, shape[3]) if one_head else shape
        if heads >= 1 and d >= 1:
            return reshape.input[0], [g, n, heads * d], heads, d
    return None


def fuse_attention(model: Any) -> int:
    """Rewrite every plain attention core of ``model`` into MultiHeadAttention; returns how many.

    A group of query chunks (Split on the token axis -> one core per chunk over the same keys and
    values -> Concat on the token axis, in the same order) becomes one node; so does a lone core.
    Two layouts are recognised:

    * single-head, 3-D (memory attention): q [B or 1, N, D], keys Transpose(K, (0, 2, 1)), values [B, L, Dv];
    * multi-head, 4-D (Hiera): q, k, v cut into heads from [G, N, heads * d] tensors (``_split_heads``)
      and the output put back: Transpose(out, (0, 2, 1, 3)) -> Reshape to [G, N, heads * dv]. The
      fused node takes and gives the [G, N, heads * d] tensors, so the head transposes go as well.

    The fused node has scale 1: the pattern has nothing between the first MatMul and the Softmax
    (our graphs fold the softmax scale into the query weights). A query batch of 1 (memory
    attention's frame shared by every object) is Expanded to the keys' batch: the kernel wants
    equal batches. Needs opset >= 15 (Shape with start/end); returns 0 below it.
    """
    from onnx import helper, numpy_helper

    from sam2edge.export.graph_opt import _const_values

    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < 15:
        return 0
    values = _const_values(graph)
    ranks = _ranks(model)
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    # softmax node -> its core; the node objects are kept so that their ids stay theirs
    cores = [(s, c) for s in graph.node if s.op_type == "Softmax" and (c := _core(s, producer, consumers))]
    by_q = {c[0]: (s, c) for s, c in cores}

    def core_nodes(softmax: Any, out_mm: Any) -> list[Any]:
        return [producer[softmax.input[0]], softmax, out_mm]

    groups = []  # (q, keys transposed, values, output, token axis, nodes replaced)
    grouped: set[int] = set()
    for split in list(graph.node):
        if split.op_type != "Split" or _attr(split, "axis", 0) not in (1, 2):
            continue
        chunks = [by_q.get(o) for o in split.output]
        if not chunks or any(c is None for c in chunks):
            continue
        _, (_, kt, v, _) = chunks[0]
        outs = [core[3].output[0] for _, core in chunks]
        concat = consumers.get(outs[0], [None])[0]
        axis = _attr(split, "axis", 0)
        if (concat is None or concat.op_type != "Concat" or _attr(concat, "axis", 0) != axis or list(concat.input) != outs
                or any(core[1:3] != (kt, v) or consumers.get(o) != [concat] for (_, core), o in zip(chunks, outs))):
            continue
        doomed = [split] + [n for softmax, core in chunks for n in core_nodes(softmax, core[3])] + [concat]
        groups.append((split.input[0], kt, v, concat.output[0], axis, doomed))
        grouped.update(id(softmax) for softmax, _ in chunks)
    for softmax, (q, kt, v, out_mm) in cores:
        if id(softmax) not in grouped:
            groups.append((q, kt, v, out_mm.output[0], None, core_nodes(softmax, out_mm)))

    removed: set[int] = set()
    inserted: dict[int, list[Any]] = {}  # id(node the replacement goes before) -> nodes
    count = 0
    for q, kt, v, out, axis, doomed in groups:
        base = f"fused_attention_{count}"
        transpose = _made(kt, "Transpose", producer, [0, 2, 1])
        if transpose is not None and axis in (1, None) and all(ranks.get(x, 3) == 3 for x in (q, transpose.input[0], v)):
            # single head, 3-D
            ones = f"{base}_ones"
            graph.initializer.append(numpy_helper.from_array(np.ones(2, np.int64), ones))
            k = transpose.input[0]
            nodes = [  # broadcast a query batch of 1 (a frame shared by every object) to the keys' batch
                helper.make_node("Shape", [k], [f"{base}_batch"], name=f"{base}_batch", start=0, end=1),
                helper.make_node("Concat", [f"{base}_batch", ones], [f"{base}_shape"], name=f"{base}_shape", axis=0),
                helper.make_node("Expand", [q, f"{base}_shape"], [f"{base}_q"], name=f"{base}_expand"),
                helper.make_node("MultiHeadAttention", [f"{base}_q", k, v], [out], name=base, domain=ORT_DOMAIN,
                                 num_heads=1, scale=1.0),
            ]
        elif axis in (2, None):  # multi-head, 4-D
            parts = [_split_heads(name, kind, producer, values) for name, kind in ((q, "q"), (kt, "k"), (v, "v"))]
            users = consumers.get(out, [])
            tr = users[0] if len(users) == 1 and users[0].op_type == "Transpose" and \
                list(_attr(users[0], "perm", [])) == [0, 2, 1, 3] else None
            after = consumers.get(tr.output[0], []) if tr is not None else []
            # The heads are merged back by a Reshape of [G, N, heads, dv] (to [G, N, heads * dv], or further):
            # the fused output [G, N, heads * dv] holds the same elements in the same order, so that Reshape
            # stays and takes it instead, unless its target copies a dim (0) past the first two.
            merge = after[0] if len(after) == 1 and after[0].op_type == "Reshape" and after[0].input[1] in values and \
                0 not in values[after[0].input[1]].reshape(-1)[2:] else None
            if any(p is None for p in parts) or merge is None:
                continue
            (_, _, hq, dq), (_, _, hk, dk), (_, _, hv, _) = parts
            if not hq == hk == hv or dq != dk:
                continue
            nodes, flat = [], []
            for label, (x, shape, _, _) in zip("qkv", parts):
                if ranks.get(x) == 3:
                    flat.append(x)
                    continue
                if 0 in shape:  # a dim copied from x: only right when x is already 3-D
                    break
                const = f"{base}_{label}_shape"
                graph.initializer.append(numpy_helper.from_array(np.array(shape, np.int64), const))
                nodes.append(helper.make_node("Reshape", [x, const], [f"{base}_{label}"], name=f"{base}_{label}"))
                flat.append(f"{base}_{label}")
            if len(flat) != 3:
                continue
            doomed = [*doomed, tr]
            nodes.append(helper.make_node("MultiHeadAttention", flat, [f"{base}_out"], name=base, domain=ORT_DOMAIN,
                                          num_heads=hq, scale=1.0))
            merge.input[0] = f"{base}_out"
        else:
            continue
        inserted[id(doomed[-1])] = nodes
        removed.update(id(n) for n in doomed)
        count += 1
    if not count:
        return 0

    nodes = []
    for node in list(graph.node):
        nodes.extend(inserted.get(id(node), []))
        if id(node) not in removed:
            nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(_live(nodes, {o.name for o in graph.output}))
    if not any(o.domain == ORT_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ORT_DOMAIN, 1))
    used = {i for n in graph.node for i in n.input}
    kept = [t for t in graph.initializer if t.name in used or t.name in {i.name for i in graph.input}]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    return count


def _ranks(model: Any) -> dict[str, int]:
    """Tensor name -> rank, where ONNX shape inference knows it."""
    from onnx import shape_inference

    graph = shape_inference.infer_shapes(model).graph
    return {vi.name: len(vi.type.tensor_type.shape.dim) for vi in (*graph.value_info, *graph.input, *graph.output)
            if vi.type.tensor_type.HasField("shape")}


def _live(nodes: list[Any], outputs: set[str]) -> list[Any]:
    """``nodes`` without those whose outputs nothing uses (the keys' Transposes left behind)."""
    needed = set(outputs)
    kept = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    return kept[::-1]


POINTERS = 16
CASES = [("image_encoder", {}), *(("memory_attention", {"objects": o, "frames": f}) for o, f in
                                  ((1, 1), (1, 4), (1, 7), (4, 4)))]


def feeds_for(name: str, case: dict) -> dict[str, np.ndarray]:
    if name == "image_encoder":
        return {"image": np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)}
    return attention_feeds(case["frames"], POINTERS, case["objects"])


def export_random(folder: Path, threads: int) -> Path:
    from sam2edge.export.onnx_export import ExportSettings, export_checkpoint
    from sam2edge.model.checkpoint import write_random_checkpoint

    ckpt = write_random_checkpoint(folder / "tiny.pt", "sam2.1_hiera_tiny", seed=0)
    return export_checkpoint(ckpt, out_dir=folder / "onnx", artifacts=["image_encoder", "memory_attention"],
                             settings=ExportSettings(threads=threads), progress=lambda m: print(m, flush=True))


def fused_copy(onnx_dir: Path, name: str, folder: Path) -> tuple[Path, int]:
    """``name``'s graph with its attention fused, saved in ``folder``; (path, cores fused)."""
    import onnx

    model = onnx.load(str(onnx_dir / f"{name}.onnx"))
    fused = fuse_attention(model)
    onnx.checker.check_model(model, full_check=True)
    path = folder / f"{name}.fused.onnx"
    onnx.save(model, str(path))
    return path, fused


def bench(onnx_dir: Path, threads: int, repeats: int, folder: Path) -> list[dict]:
    from sam2edge.backends.onnxruntime_runner import OnnxRuntimeRunner
    from sam2edge.contract.artifacts import ARTIFACTS

    fused_files = {name: fused_copy(onnx_dir, name, folder) for name in dict(CASES)}
    rows = []
    for name, case in CASES:
        path, cores = fused_files[name]
        graphs = {"standard": OnnxRuntimeRunner(ARTIFACTS[name], onnx_dir / f"{name}.onnx", threads=threads),
                  "fused": OnnxRuntimeRunner(ARTIFACTS[name], path, threads=threads)}
        feeds = feeds_for(name, case)
        outs = {label: r.infer(feeds) for label, r in graphs.items()}  # warm-up, and the outputs compared
        diff = max(float(np.abs(outs["standard"][k] - outs["fused"][k]).max()) for k in outs["standard"])
        times: dict[str, list[float]] = {label: [] for label in graphs}
        for _ in range(repeats):
            for label, runner in graphs.items():
                t0 = time.perf_counter()
                runner.infer(feeds)
                times[label].append(1000 * (time.perf_counter() - t0))
        ms = {label: statistics.median(t) for label, t in times.items()}
        row = {"artifact": name, **case, "cores_fused": cores, "ms": ms, "speedup": ms["standard"] / ms["fused"],
               "max_abs_diff": diff, "load_avg": os.getloadavg()[0]}
        rows.append(row)
        print(row, flush=True)
        for r in graphs.values():
            r.deactivate()
    return rows


def markdown(result: dict) -> str:
    lines = [f"ONNX Runtime {result['onnxruntime']} CPU, {result['threads']} threads, medians of {result['repeats']} "
             f"interleaved calls; load average {result['load_start']} before, {result['load_end']} after.", "",
             "| artifact | case | cores fused | standard graph ms | fused graph ms | speedup | max abs diff | load avg |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        case = "1 image, 1024x1024" if r["artifact"] == "image_encoder" else \
            f"{r['objects']} object(s), {r['frames']} memory frame(s), {POINTERS} pointers"
        lines.append(f"| {r['artifact']} | {case} | {r['cores_fused']} | {r['ms']['standard']:.0f} | {r['ms']['fused']:.0f} | "
                     f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} | {r['load_avg']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", default=None, help="an export folder (default: export random hiera_tiny weights first)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(RESULTS / "ort_fused_attention.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = Path(args.onnx) if args.onnx else export_random(Path(tmp), args.threads)
        load_start = [round(v, 2) for v in os.getloadavg()]
        rows = bench(onnx_dir, args.threads, args.repeats, Path(tmp))
    result = {"machine": machine(), "onnxruntime": onnxruntime.__version__, "threads": args.threads, "repeats": args.repeats,
              "load_start": load_start, "rows": rows, "load_end": [round(v, 2) for v in os.getloadavg()]}
    write_report(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
