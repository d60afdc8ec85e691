"""Where an exported network's time goes on ONNX Runtime (CPU), and how near each product runs to
the library's own GEMM rate.

ONNX Runtime's profiler times every node of the optimised graph; this sums the kernels by op type
(ms per run, share, count) and, for the matrix products (MatMul, FusedMatMul, Gemm), counts their
FLOPs from the shapes the profiler records: 2 x (output elements) x (contracted length). Each of
the costliest product shapes is then run alone, as one MatMul node in its own session with the
same threads (``--isolated``), which is the rate this ONNX Runtime build reaches on that shape
with nothing around it: a product near its isolated rate cannot be made faster by rewriting the
graph, only by a faster GEMM (or fewer FLOPs). Batched products (attention: per head or per
query chunk, both operands computed) are run alone as one 2-D product of the same size, a
stand-in that can read a little above or below them.

    python benchmarks/ort_profile.py --onnx /tmp/sam2edge-video-bench-onnx --artifact memory_attention \\
        --objects 1 --memory-frames 4
    python benchmarks/ort_profile.py --onnx /tmp/sam2edge-video-bench-onnx --artifact image_encoder

Reads an export made by ``sam2edge export`` (or by benchmarks/video_cpu.py). Writes
benchmarks/results/ort_profile_<artifact>.json and .md. Needs onnxruntime and onnx.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, like the other benchmarks
from benchmarks.common import RESULTS, write_report  # noqa: E402

PRODUCTS = ("MatMul", "FusedMatMul", "Gemm")


def _session(model: str | bytes, threads: int, profile_prefix: str | None = None, optimized_path: str | None = None):
    import onnxruntime as ort

    from sam2edge.backends.onnxruntime_runner import CPU_DISABLED_OPTIMIZERS

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS))


def feeds_for(artifact: str, objects: int, memory_frames: int, pointers: int) -> dict[str, np.ndarray]:
    if artifact == "memory_attention":
        from benchmarks.memory_attention_cost import attention_feeds

        return attention_feeds(memory_frames, pointers, objects)
    if artifact == "image_encoder":
        return {"image": np.random.default_rng(0).standard_normal((1, 3, 1024, 1024)).astype(np.float32)}
    raise SystemExit(f"--artifact must be memory_attention or image_encoder, got {artifact!r}")


def _shapes(args: dict, key: str) -> list[list[int]]:
    return [list(next(iter(d.values()))) for d in args.get(key, [])]


def _trans_a(optimized_model: str) -> dict[str, bool]:
    """Node name -> whether its first operand is transposed (FusedMatMul / Gemm ``transA``)."""
    import onnx

    model = onnx.load(optimized_model, load_external_data=False)
    return {n.name: any(a.name == "transA" and a.i for a in n.attribute) for n in model.graph.node
            if n.op_type in PRODUCTS}


def product_flops(in_shapes: list[list[int]], out_shape: list[int], trans_a: bool) -> int:
    """2 x output elements x contracted length (the first operand's last dim, or its second-last if transposed)."""
    a = in_shapes[0]
    inner = a[-2] if trans_a else a[-1]
    return 2 * int(np.prod(out_shape)) * int(inner)


def profile(model_path: Path, feeds: dict, threads: int, runs: int) -> dict:
    """Per op type and per product shape: ms per run (kernel time), counts, GFLOP."""
    with tempfile.TemporaryDirectory() as tmp:
        optimized = str(Path(tmp) / "optimized.onnx")
        sess = _session(str(model_path), threads, str(Path(tmp) / "profile"), optimized)
        sess.run(None, feeds)  # warm-up: arena, prepacking
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            walls.append(1000 * (time.perf_counter() - t0))
        events = json.loads(Path(sess.end_profiling()).read_text())
        trans_a = _trans_a(optimized)
    per_op: dict[str, dict] = collections.defaultdict(lambda: {"us": 0.0, "count": 0})
    per_shape: dict[tuple, dict] = collections.defaultdict(lambda: {"us": 0.0, "count": 0, "flops": 0})
    kernel_runs = collections.Counter()
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        args, op = e["args"], e["args"]["op_name"]
        node = e["name"][: -len("_kernel_time")]
        kernel_runs[node] += 1
        if kernel_runs[node] == 1:
            continue  # the warm-up run
        per_op[op]["us"] += e["dur"]
        per_op[op]["count"] += 1
        if op in PRODUCTS:
            ins, out = _shapes(args, "input_type_shape"), _shapes(args, "output_type_shape")
            flops = product_flops(ins, out[0], trans_a.get(node, False))
            a = ins[0]
            inner = a[-2] if trans_a.get(node, False) else a[-1]
            rows = int(np.prod(out[0][:-1]))
            key = (op, rows, int(inner), int(out[0][-1]))
            per_shape[key]["us"] += e["dur"]
            per_shape[key]["count"] += 1
            per_shape[key]["flops"] += flops
            per_op[op]["flops"] = per_op[op].get("flops", 0) + flops
    total_us = sum(v["us"] for v in per_op.values())
    ops = [{"op": op, "ms": v["us"] / runs / 1e3, "share": v["us"] / total_us, "count": v["count"] // runs,
            "gflop": v.get("flops", 0) / runs / 1e9,
            "gflops_per_s": (v["flops"] / (v["us"] / 1e6) / 1e9) if v.get("flops") else None}
           for op, v in sorted(per_op.items(), key=lambda kv: -kv[1]["us"])]
    shapes = [{"op": k[0], "rows": k[1], "inner": k[2], "cols": k[3], "ms": v["us"] / runs / 1e3,
               "count": v["count"] // runs, "gflop": v["flops"] / runs / 1e9,
               "gflops_per_s": v["flops"] / (v["us"] / 1e6) / 1e9}
              for k, v in sorted(per_shape.items(), key=lambda kv: -kv[1]["us"])]
    return {"wall_ms": statistics.median(walls), "kernel_ms": total_us / runs / 1e3, "ops": ops, "product_shapes": shapes}


def matmul_session(rows: int, inner: int, cols: int, threads: int) -> tuple:
    """One MatMul [rows, inner] x [inner, cols] (constant right operand) alone in a session with
    our CPU settings -> (session, its input feeds)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((inner, cols)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "product",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, inner])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, cols])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return _session(model.SerializeToString(), threads), {"x": rng.standard_normal((rows, inner)).astype(np.float32)}


def isolated_rate(rows: int, inner: int, cols: int, threads: int, runs: int = 7) -> float:
    """GFLOP/s of one MatMul [rows, inner] x [inner, cols] (constant right operand), alone in a session."""
    sess, feeds = matmul_session(rows, inner, cols, threads)
    sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return 2 * rows * inner * cols / statistics.median(times) / 1e9


def markdown(result: dict) -> str:
    s = result["settings"]
    what = s["artifact"] + (f", {s['objects']} object(s), {s['memory_frames']} memory frame(s), {s['pointers']} pointers"
                            if s["artifact"] == "memory_attention" else "")
    lines = [f"# ONNX Runtime profile: {what}", "",
             f"onnxruntime {result['onnxruntime']}, CPU, {s['threads']} threads, {s['runs']} profiled runs; "
             f"load average {result['load_before'][0]:.2f} before, {result['load_after'][0]:.2f} after.",
             f"Wall time per run (median): {result['wall_ms']:.0f} ms; kernels: {result['kernel_ms']:.0f} ms.", "",
             "| op | ms/run | share | nodes | GFLOP | GFLOP/s |", "|---|---|---|---|---|---|"]
    for o in result["ops"]:
        if o["share"] < 0.002:
            continue
        rate = f"{o['gflops_per_s']:.0f}" if o["gflops_per_s"] else ""
        gflop = f"{o['gflop']:.1f}" if o["gflop"] else ""
        lines.append(f"| {o['op']} | {o['ms']:.1f} | {100 * o['share']:.1f}% | {o['count']} | {gflop} | {rate} |")
    lines += ["", "Costliest product shapes ([rows, inner] x [inner, cols]; rows include any batch), against the "
              "same shape run alone as one MatMul:", "",
              "| op | rows x inner x cols | nodes | ms/run | GFLOP/s in graph | alone | in graph / alone |",
              "|---|---|---|---|---|---|---|"]
    for p in result["product_shapes"]:
        alone = p.get("isolated_gflops_per_s")
        tail = f"{alone:.0f} | {p['gflops_per_s'] / alone:.2f}" if alone else " | "
        lines.append(f"| {p['op']} | {p['rows']} x {p['inner']} x {p['cols']} | {p['count']} | {p['ms']:.1f} | "
                     f"{p['gflops_per_s']:.0f} | {tail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--onnx", required=True, help="export folder holding <artifact>.onnx")
    p.add_argument("--artifact", default="memory_attention", choices=["memory_attention", "image_encoder"])
    p.add_argument("--objects", type=int, default=1)
    p.add_argument("--memory-frames", type=int, default=4)
    p.add_argument("--pointers", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--isolated", type=int, default=6, help="how many of the costliest product shapes to run alone")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    import onnxruntime as ort

    path = Path(args.onnx) / f"{args.artifact}.onnx"
    if not path.is_file():
        raise SystemExit(f"no {path}: export first (see the module docstring)")
    load_before = os.getloadavg()
    result = {"settings": {k: v for k, v in vars(args).items() if k != "out"}, "onnxruntime": ort.__version__,
              "load_before": load_before}
    result.update(profile(path, feeds_for(args.artifact, args.objects, args.memory_frames, args.pointers),
                          args.threads, args.runs))
    for shape in result["product_shapes"][: args.isolated]:
        shape["isolated_gflops_per_s"] = isolated_rate(shape["rows"], shape["inner"], shape["cols"], args.threads)
    result["load_after"] = os.getloadavg()
    out = Path(args.out) if args.out else RESULTS / f"ort_profile_{args.artifact}.json"
    write_report(out, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
