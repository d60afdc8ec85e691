"""The static TensorRT-parser check on hand-made graphs (each refused pattern must be caught)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sam2edge.contract.spec import ArtifactSpec, Dim, TensorSpec  # noqa: E402
from sam2edge.errors import ExportError  # noqa: E402
from sam2edge.export.trt_compat import assert_trt_compatible, check_graph  # noqa: E402

N = Dim("n", 1, 2, 4)
SPEC = ArtifactSpec("toy", (TensorSpec("x", "float32", (N, 4)),), (TensorSpec("y", "float32", (N, 4)),))


def _model(nodes, inits=(), inputs=None, outputs=None, opset=17):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])]
    graph = helper.make_graph(nodes, "toy", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def test_plain_graph_passes():
    m = _model([helper.make_node("Relu", ["x"], ["h"]), helper.make_node("Add", ["h", "x"], ["y"])])
    report = assert_trt_compatible(m, SPEC)
    assert report.ok and report.op_counts == {"Add": 1, "Relu": 1}


def test_if_node_fails():
    then_g = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, ["n", 4])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, ["n", 4])])
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    report = check_graph(_model(nodes, [_const("zero", np.float32(0))]))
    print("If problems:", report.problems)
    assert not report.ok
    assert any("If" in p for p in report.problems)
    with pytest.raises(ExportError, match="If"):
        assert_trt_compatible(_model(nodes, [_const("zero", np.float32(0))]))


def test_onehot_fails():
    nodes = [
        helper.make_node("ArgMax", ["x"], ["i"], axis=1, keepdims=0),
        helper.make_node("OneHot", ["i", "depth", "vals"], ["y"], axis=-1),
    ]
    m = _model(nodes, [_const("depth", np.int64(4)), _const("vals", np.array([0, 1], np.float32))])
    report = check_graph(m)
    assert any("OneHot" in p for p in report.problems), report.problems


def test_tile_with_computed_repeats_fails_constant_repeats_pass():
    computed = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Div", ["s", "s"], ["r"]),
        helper.make_node("Tile", ["x", "r"], ["y"]),
    ]
    assert any("Tile" in p and "constant" in p for p in check_graph(_model(computed)).problems)
    const = [helper.make_node("Tile", ["x", "reps"], ["y"])]
    assert check_graph(_model(const, [_const("reps", np.array([1, 1], np.int64))])).ok


def test_antialiased_and_cubic_resize_fail():
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])]
    scales = _const("scales", np.array([1, 1, 0.5, 0.5], np.float32))
    aa = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear", antialias=1)
    report = check_graph(_model([aa], [scales], inputs, outputs, opset=18))
    assert any("antialias" in p for p in report.problems), report.problems
    cubic = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="cubic")
    assert any("cubic" in p for p in check_graph(_model([cubic], [scales], inputs, outputs, opset=18)).problems)
    ok = helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")
    assert check_graph(_model([ok], [scales], inputs, outputs, opset=18)).ok


def test_shape_tensor_input_fails():
    """An input whose *values* become a Reshape shape (the orig_im_size pattern)."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4]),
              helper.make_tensor_value_info("size", TensorProto.INT64, [2])]
    nodes = [helper.make_node("Add", ["size", "one"], ["s2"]), helper.make_node("Reshape", ["x", "s2"], ["y"])]
    report = check_graph(_model(nodes, [_const("one", np.array([0, 0], np.int64))], inputs))
    assert any("shape tensor" in p for p in report.problems), report.problems
    # A shape taken from the input's *shape* is fine.
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["y"])]
    assert check_graph(_model(nodes)).ok


def test_complex_double_and_custom_domain_fail():
    cast = helper.make_node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE)
    back = helper.make_node("Cast", ["d"], ["y"], to=TensorProto.FLOAT)
    assert any("double" in p for p in check_graph(_model([cast, back])).problems)
    cplx = helper.make_node("Cast", ["x"], ["y"], to=TensorProto.COMPLEX64)
    assert any("complex64" in p for p in check_graph(_model([cplx])).problems)
    fused = helper.make_node("FusedMatMul", ["x", "x"], ["y"], domain="com.microsoft")
    m = _model([fused])
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert any("custom domain" in p for p in check_graph(m).problems)


def test_unknown_op_and_opset_range():
    m = _model([helper.make_node("Det", ["x"], ["y"])])
    assert any("support matrix" in p for p in check_graph(m).problems)
    m = _model([helper.make_node("Relu", ["x"], ["y"])], opset=21)
    assert any("opset 21" in p for p in check_graph(m).problems)


def test_io_must_match_spec():
    m = _model([helper.make_node("Relu", ["x"], ["y"])],
               inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])])
    problems = check_graph(m, SPEC).problems
    assert any("input 'x' has shape" in p for p in problems), problems
    m = _model([helper.make_node("Relu", ["x"], ["z"])],
               outputs=[helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 4])])
    assert any("outputs" in p for p in check_graph(m, SPEC).problems)
