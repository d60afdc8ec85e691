"""Small exact rewrites of exported graphs that let runtimes fuse more (standard ONNX only).

* ``canonicalize_gelu``: the exporter writes exact GELU as ``x * (0.5 * (erf(x/sqrt2) + 1))``,
  an ordering ONNX Runtime's Gelu fusion does not match; it is rewritten to
  ``(x * (erf(x/sqrt2) + 1)) * 0.5``. Multiplying by 0.5 is exact in binary floating point,
  so outputs are bit-identical; ONNX Runtime then fuses each chain (5 element-wise passes)
  into one Gelu / BiasGelu kernel.
* ``fuse_matmul_bias``: ``Add(MatMul(X, W), b)`` with constant W [K,N], b [N] and X of rank
  > 2 becomes ``Reshape(Gemm(Reshape(X, [-1, K]), W, b), [..., N])``, so the bias is added
  inside the GEMM instead of by a separate pass over the output.

* ``fold_constant_weights``: layout and arithmetic ops whose inputs are all constants (the
  dynamo exporter leaves e.g. ``Split`` + ``Transpose`` of a qkv weight cut in three, the
  query weight times the softmax scale, or the product of two composed 1x1 conv weights) are
  evaluated once and stored as initializers, so the MatMuls see constant weights and the bias
  fusion applies. Runs first; weights left unused are dropped.

All keep the graph inside TensorRT's supported operator set (checked after export).
Requires onnx.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _consumers(graph: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _const_values(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _is_scalar(values: dict[str, np.ndarray], name: str, target: float, rtol: float = 1e-6) -> bool:
    v = values.get(name)
    return v is not None and v.size == 1 and abs(float(v.reshape(())) - target) <= rtol * abs(target)


def canonicalize_gelu(model: Any) -> int:
    """Rewrite ``Mul(x, Mul(0.5, Add(Erf(Div(x, sqrt2)), 1)))`` in place; returns the count."""
    graph = model.graph
    values = _const_values(graph)
    producer = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    count = 0
    for half in list(graph.node):
        if half.op_type != "Mul" or len(half.input) != 2:
            continue
        const = next((i for i in half.input if _is_scalar(values, i, 0.5)), None)
        if const is None:
            continue
        add_out = half.input[1] if half.input[0] == const else half.input[0]
        add = producer.get(add_out)
        if add is None or add.op_type != "Add" or not any(_is_scalar(values, i, 1.0) for i in add.input):
            continue
        erf = producer.get(next(i for i in add.input if not _is_scalar(values, i, 1.0)))
        div = producer.get(erf.input[0]) if erf is not None and erf.op_type == "Erf" else None
        if div is None or div.op_type != "Div" or not _is_scalar(values, div.input[1], float(np.sqrt(2.0)), 1e-5):
            continue
        x = div.input[0]
        users = consumers.get(half.output[0], [])
        if len(users) != 1 or users[0].op_type != "Mul" or x not in users[0].input:
            continue
        outer = users[0]
        # half: Mul(x, add_out) -> t ; outer: Mul(t, 0.5) -> gelu (same output name as before)
        half.input[:] = [x, add_out]
        outer.input[:] = [half.output[0], const]
        count += 1
    return count


FOLDABLE_OPS = frozenset({"Split", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Slice", "Concat", "Gather", "Cast",
                          "Mul", "Div", "Add", "Sub", "MatMul"})


def fold_constant_weights(model: Any) -> int:
    """Replace layout and arithmetic ops on constants by their results (initializers); returns how many were folded."""
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    opsets = {o.domain or "": o.version for o in model.opset_import}
    values = _const_values(graph)
    nodes, folded = [], 0
    for node in graph.node:  # topological order: a folded output can feed the next node
        inputs = [i for i in node.input if i]
        if node.op_type in FOLDABLE_OPS and (node.domain or "") == "" and inputs and all(i in values for i in inputs):
            results = ReferenceEvaluator(node, opsets=opsets).run(None, {i: values[i] for i in inputs})
            if sum(np.size(r) for r in results) > sum(np.size(values[i]) for i in inputs):
                nodes.append(node)  # a broadcast that grows the data: cheaper to compute than to store
                continue
            for name, value in zip(node.output, results):
                values[name] = value
                graph.initializer.append(numpy_helper.from_array(value, name))
            folded += 1
        else:
            nodes.append(node)
    if folded:
        graph.ClearField("node")
        graph.node.extend(nodes)
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        kept = [t for t in graph.initializer if t.name in used]
        graph.ClearField("initializer")
        graph.initializer.extend(kept)
    return folded


def fuse_matmul_bias(model: Any) -> int:
    """Turn ``Add(MatMul(X, W), b)`` (X rank > 2, W [K,N] and b [N] constant) into a Gemm."""
    from onnx import helper, numpy_helper

    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}  # initializers only: no ordering issue
    consumers = _consumers(graph)
    replaced: dict[int, list[Any]] = {}  # id(MatMul) -> replacement nodes
    dropped: set[int] = set()  # id(Add)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in values or values[node.input[1]].ndim != 2:
            continue
        users = consumers.get(node.output[0], [])
        if len(users) != 1 or users[0].op_type != "Add":
            continue
        add = users[0]
        bias = next((i for i in add.input if i != node.output[0]), None)
        k, n = values[node.input[1]].shape
        if bias not in values or values[bias].shape != (n,):
            continue
        base = f"{node.name or node.output[0]}_gemm"
        consts = {f"{base}_{key}": np.array(v, np.int64) for key, v in
                  (("k", [-1, k]), ("n", [n]), ("zero", [0]), ("minus1", [-1]))}
        graph.initializer.extend(numpy_helper.from_array(v, key) for key, v in consts.items())
        x, w = node.input
        flat_in, flat_out, full, lead, out_shape = (f"{base}_{s}" for s in ("in2d", "out2d", "full", "lead", "shape"))
        replaced[id(node)] = [
            helper.make_node("Reshape", [x, f"{base}_k"], [flat_in], name=f"{base}_reshape_in"),
            helper.make_node("Gemm", [flat_in, w, bias], [flat_out], name=base),
            helper.make_node("Shape", [x], [full], name=f"{base}_shape"),
            helper.make_node("Slice", [full, f"{base}_zero", f"{base}_minus1", f"{base}_zero"], [lead],
                             name=f"{base}_lead"),
            helper.make_node("Concat", [lead, f"{base}_n"], [out_shape], name=f"{base}_concat", axis=0),
            helper.make_node("Reshape", [flat_out, out_shape], [add.output[0]], name=f"{base}_reshape_out"),
        ]
        dropped.add(id(add))
    nodes = []
    for node in graph.node:
        if id(node) in dropped:
            continue
        nodes.extend(replaced.get(id(node), [node]))
    graph.ClearField("node")
    graph.node.extend(nodes)
    return len(replaced)


def optimize_for_runtimes(model: Any) -> dict[str, int]:
    """Apply every rewrite in place; returns how many sites each one changed."""
    folded = fold_constant_weights(model)
    return {"constants_folded": folded, "gelu_canonicalized": canonicalize_gelu(model),
            "matmul_bias_to_gemm": fuse_matmul_bias(model)}
