"""Static TensorRT-parser compatibility check of an ONNX graph.

TensorRT cannot be installed everywhere the export runs, so the export walks each graph
and refuses what TensorRT's ONNX parser (onnx-tensorrt) does not take, or takes badly:

* operators outside the parser's support matrix (docs/operators.md of onnx-tensorrt,
  TensorRT 8.5-10.x: the ``Y`` rows, plus LayerNormalization from 8.6), non-ONNX domains
  (e.g. ``com.microsoft`` fused ops) and model-local functions;
* control flow (``If``/``Loop``/``Scan``) and ``OneHot``; ``Tile`` whose repeats are not
  constants; ``NonZero``/``Unique`` (data-dependent shapes);
* ``Resize`` with ``antialias=1``, cubic mode or an unsupported coordinate transform;
* complex, string or double tensors anywhere;
* shape tensors computed from input *values* (an input feeding a Reshape shape, a Resize
  size, Expand/Tile/Slice/Pad/Range/ConstantOfShape/TopK arguments ...): shapes may only be
  derived from input *shapes*;
* ``Slice``/``Squeeze``/``Unsqueeze`` axes, ``TopK`` K and ``Conv`` weights that are not
  constants (required by some parser versions);
* graph inputs/outputs whose names, dtypes or dims differ from the artifact spec, or any
  dynamic dim the spec does not declare;
* a default-domain opset above ``max_opset`` (TensorRT 10.0 parses opsets 9-20).

Only ``onnx`` is needed (no TensorRT).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sam2edge.contract.spec import Dim
from sam2edge.errors import ExportError

if TYPE_CHECKING:  # pragma: no cover
    import onnx

    from sam2edge.contract.spec import ArtifactSpec

MAX_OPSET = 20
MIN_OPSET = 9

# Operators with a "Y" in onnx-tensorrt's support matrix (TensorRT 8.5; still supported in 10.x).
SUPPORTED_OPS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
    Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
    Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample HardSigmoid HardSwish Identity
    ImageScaler InstanceNormalization IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax LRN
    LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg Not Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
    ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize Round ScaledTanh
    ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign
    SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Where Xor
    """.split()
)

# Supported by the parser but refused here: control flow, shape-computing and data-dependent ops.
REFUSED_OPS = {
    "If": "control flow (If) - TensorRT builds conditional layers poorly and users hit parser errors",
    "Loop": "control flow (Loop)",
    "Scan": "control flow (Scan)",
    "OneHot": "OneHot (a known TensorRT parser failure when it computes shapes)",
    "NonZero": "NonZero (data-dependent output shape)",
    "Unique": "Unique (data-dependent output shape)",
    "NonMaxSuppression": "NonMaxSuppression (data-dependent output shape)",
}

# For each op, the input positions that TensorRT treats as shape tensors / must be constant.
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Expand": (1,),
    "Tile": (1,),
    "Resize": (1, 2, 3),
    "Upsample": (1,),
    "Slice": (1, 2, 3, 4),
    "Pad": (1, 2, 3),
    "ConstantOfShape": (0,),
    "Range": (0, 1, 2),
    "TopK": (1,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "ReduceSum": (1,),
    "ReduceMean": (1,),
    "ReduceMax": (1,),
    "ReduceMin": (1,),
    "Split": (1,),
}
CONSTANT_INPUTS: dict[str, tuple[int, ...]] = {
    "Tile": (1,),
    "Slice": (3,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "TopK": (1,),
    "Conv": (1,),
    "ConvTranspose": (1,),
}
# Ops whose output depends only on the *shape* of their input, not its values.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})

RESIZE_MODES = frozenset({"nearest", "linear"})
RESIZE_TRANSFORMS = frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"})
# TensorProto data types refused anywhere: DOUBLE 11, COMPLEX64 14, COMPLEX128 15, STRING 8.
BAD_TYPES = {8: "string", 11: "double", 14: "complex64", 15: "complex128"}
IO_TYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16"}


@dataclass
class CompatReport:
    """Result of :func:`check_graph`: ``ok`` when ``problems`` is empty."""

    name: str
    opset: int
    op_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"ok": self.ok, "opset": self.opset, "op_counts": self.op_counts, "problems": self.problems}


def check_graph(
    model: onnx.ModelProto | str | os.PathLike, spec: ArtifactSpec | None = None, max_opset: int = MAX_OPSET
) -> CompatReport:
    """Walk ``model`` and list every TensorRT-parser incompatibility (see the module doc)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(os.fspath(model), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    report = CompatReport(name=model.graph.name or "graph", opset=opset)
    if not MIN_OPSET <= opset <= max_opset:
        report.problems.append(f"default-domain opset {opset} outside TensorRT's range {MIN_OPSET}..{max_opset}")
    if len(model.functions):
        names = sorted({f.name for f in model.functions})
        report.problems.append(f"model-local functions present (inline them first): {names[:5]}")
    _check_nodes(model.graph, report)
    _check_types(model.graph, report)
    _check_shape_tensors(model.graph, report)
    if spec is not None:
        _check_io(model.graph, spec, report)
    return report


def assert_trt_compatible(
    model: onnx.ModelProto | str | os.PathLike, spec: ArtifactSpec | None = None, max_opset: int = MAX_OPSET
) -> CompatReport:
    """:func:`check_graph`, raising ExportError listing the problems when there are any."""
    report = check_graph(model, spec, max_opset)
    if not report.ok:
        what = spec.name if spec is not None else report.name
        lines = "\n  - ".join(report.problems[:20])
        raise ExportError(f"{what}: graph is not TensorRT-parser compatible:\n  - {lines}")
    return report


def _constant_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer}
    names |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    return names


def _check_nodes(graph: onnx.GraphProto, report: CompatReport) -> None:
    import onnx

    constants = _constant_names(graph)
    counts: dict[str, int] = defaultdict(int)
    for node in graph.node:
        counts[node.op_type] += 1
        where = f"{node.op_type} node {node.name or node.output[0]!r}"
        if node.domain not in ("", "ai.onnx"):
            report.problems.append(f"{where}: custom domain {node.domain!r} (not parsed by TensorRT without a plugin)")
            continue
        if node.op_type in REFUSED_OPS:
            report.problems.append(f"{where}: {REFUSED_OPS[node.op_type]}")
        elif node.op_type not in SUPPORTED_OPS:
            report.problems.append(f"{where}: operator not in TensorRT's ONNX support matrix")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            report.problems.append(f"{where}: has a subgraph")
        for pos in CONSTANT_INPUTS.get(node.op_type, ()):
            if pos < len(node.input) and node.input[pos] and node.input[pos] not in constants:
                report.problems.append(f"{where}: input {pos} ({node.input[pos]!r}) must be a constant for TensorRT")
        if node.op_type == "Resize":
            _check_resize(node, where, report)
    report.op_counts = dict(sorted(counts.items()))


def _check_resize(node: onnx.NodeProto, where: str, report: CompatReport) -> None:
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if int(attrs.get("antialias", 0)):
        report.problems.append(f"{where}: antialiased Resize (unsupported by TensorRT)")
    mode = attrs.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in RESIZE_MODES:
        report.problems.append(f"{where}: Resize mode {mode!r} (TensorRT supports {sorted(RESIZE_MODES)})")
    ctm = attrs.get("coordinate_transformation_mode", b"half_pixel")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    if ctm not in RESIZE_TRANSFORMS:
        report.problems.append(f"{where}: Resize coordinate_transformation_mode {ctm!r} unsupported")


def _check_types(graph: onnx.GraphProto, report: CompatReport) -> None:
    import onnx

    for t in graph.initializer:
        if t.data_type in BAD_TYPES:
            report.problems.append(f"initializer {t.name!r} has type {BAD_TYPES[t.data_type]}")
    for vi in (*graph.input, *graph.output, *graph.value_info):
        et = vi.type.tensor_type.elem_type
        if et in BAD_TYPES:
            report.problems.append(f"tensor {vi.name!r} has type {BAD_TYPES[et]}")
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type in BAD_TYPES:
                report.problems.append(f"{node.op_type} node {node.name!r}: constant of type {BAD_TYPES[a.t.data_type]}")
            if node.op_type == "Cast" and a.name == "to" and a.i in BAD_TYPES:
                report.problems.append(f"Cast node {node.name!r} casts to {BAD_TYPES[a.i]}")


def _check_shape_tensors(graph: onnx.GraphProto, report: CompatReport) -> None:
    """Refuse shape arguments that depend on graph-input *values* (shape-tensor inputs)."""
    tainted = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    for node in graph.node:  # nodes are topologically sorted in a valid model
        if node.op_type in SHAPE_ONLY_OPS:
            continue
        for pos in SHAPE_INPUTS.get(node.op_type, ()):
            if pos < len(node.input) and node.input[pos] in tainted:
                report.problems.append(
                    f"{node.op_type} node {node.name!r}: shape argument {pos} ({node.input[pos]!r}) is computed "
                    "from input values (a shape tensor input)"
                )
        data_inputs = [x for i, x in enumerate(node.input) if i not in SHAPE_INPUTS.get(node.op_type, ())]
        if any(x in tainted for x in data_inputs):
            tainted.update(node.output)


def _check_io(graph: onnx.GraphProto, spec: ArtifactSpec, report: CompatReport) -> None:
    inits = {t.name for t in graph.initializer}
    for kind, actual, wanted in (
        ("input", [i for i in graph.input if i.name not in inits], spec.inputs),
        ("output", list(graph.output), spec.outputs),
    ):
        names = [v.name for v in actual]
        if names != [t.name for t in wanted]:
            report.problems.append(f"graph {kind}s {names} differ from the spec's {[t.name for t in wanted]}")
            continue
        for vi, t in zip(actual, wanted):
            tt = vi.type.tensor_type
            dtype = IO_TYPES.get(tt.elem_type, str(tt.elem_type))
            if dtype != t.dtype:
                report.problems.append(f"{kind} {t.name!r} has dtype {dtype}, spec says {t.dtype}")
            dims = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else "?") for d in tt.shape.dim]
            want = [d.name if isinstance(d, Dim) else d for d in t.shape]
            if dims != want:
                report.problems.append(f"{kind} {t.name!r} has shape {dims}, spec says {want}")
