"""graph_opt rewrites on a small hand-built graph shaped like the exporter's output for a qkv Linear cut in three."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sam2edge.export.graph_opt import optimize_for_runtimes  # noqa: E402


def _qkv_graph() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x (B, N, 8) -> three outputs MatMul(x, Transpose(Split(W)[i])) + Split(b)[i], W (12, 8), b (12,)."""
    rng = np.random.default_rng(0)
    inits = {
        "W": rng.standard_normal((12, 8)).astype(np.float32),
        "b": rng.standard_normal(12).astype(np.float32),
        "sizes": np.array([4, 4, 4], np.int64),
    }
    nodes = [
        helper.make_node("Split", ["W", "sizes"], ["w0", "w1", "w2"], axis=0),
        helper.make_node("Split", ["b", "sizes"], ["b0", "b1", "b2"], axis=0),
    ]
    outputs = []
    for i in range(3):
        nodes += [
            helper.make_node("Transpose", [f"w{i}"], [f"wt{i}"], perm=[1, 0]),
            helper.make_node("MatMul", ["x", f"wt{i}"], [f"m{i}"]),
            helper.make_node("Add", [f"m{i}", f"b{i}"], [f"y{i}"]),
        ]
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["B", "N", 4]))
    graph = helper.make_graph(
        nodes, "qkv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "N", 8])], outputs,
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model)
    return model, inits


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def test_constant_weight_layout_is_folded_so_the_bias_joins_the_gemm():
    model, inits = _qkv_graph()
    x = np.random.default_rng(1).standard_normal((2, 5, 8)).astype(np.float32)
    before = _run(model, x)
    counts = optimize_for_runtimes(model)
    onnx.checker.check_model(model, full_check=True)
    ops = [n.op_type for n in model.graph.node]
    assert counts["constants_folded"] == 5 and counts["matmul_bias_to_gemm"] == 3, counts
    assert "Split" not in ops and "Transpose" not in ops and "MatMul" not in ops and "Add" not in ops
    assert ops.count("Gemm") == 3
    names = {t.name for t in model.graph.initializer}
    assert "W" not in names and "b" not in names, "weights no longer used must be dropped"
    after = _run(model, x)
    for i, (a, b) in enumerate(zip(before, after)):
        ref = x @ inits["W"][4 * i : 4 * i + 4].T + inits["b"][4 * i : 4 * i + 4]
        np.testing.assert_allclose(a, ref, atol=1e-5)
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=1e-6)


def test_ops_on_graph_inputs_are_left_alone():
    model, _ = _qkv_graph()
    model.graph.node.append(helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]))
    model.graph.output.append(helper.make_tensor_value_info("xt", TensorProto.FLOAT, ["B", 8, "N"]))
    optimize_for_runtimes(model)
    assert [n.op_type for n in model.graph.node].count("Transpose") == 1


def test_scaled_query_weight_is_folded_too():
    """Hiera's export scales the query weight and bias by 1/sqrt(d): Mul on constants must fold as well,
    or the MatMul keeps a computed weight and its bias stays a separate pass over the output."""
    model, inits = _qkv_graph()
    graph = model.graph
    scale = np.float32(0.125)
    graph.initializer.append(numpy_helper.from_array(np.array(scale), "scale"))
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] == "wt0":
            node.input[1] = "wt0s"
        if node.op_type == "Add" and node.input[1] == "b0":
            node.input[1] = "b0s"
    extra = [helper.make_node("Mul", ["wt0", "scale"], ["wt0s"]), helper.make_node("Mul", ["b0", "scale"], ["b0s"])]
    nodes = list(graph.node)
    at = next(i for i, n in enumerate(nodes) if n.op_type == "MatMul")
    graph.ClearField("node")
    graph.node.extend(nodes[:at] + extra + nodes[at:])
    onnx.checker.check_model(model)
    x = np.random.default_rng(2).standard_normal((2, 5, 8)).astype(np.float32)
    before = _run(model, x)
    counts = optimize_for_runtimes(model)
    ops = [n.op_type for n in model.graph.node]
    assert counts["constants_folded"] == 7 and counts["matmul_bias_to_gemm"] == 3, counts
    assert ops.count("Gemm") == 3 and "Mul" not in ops, ops
    after = _run(model, x)
    ref = (x @ inits["W"][:4].T + inits["b"][:4]) * scale
    np.testing.assert_allclose(before[0], ref, atol=1e-5)
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, atol=1e-6, rtol=1e-6)
