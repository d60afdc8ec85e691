"""The fp16/bf16 precision policy as data, derived from an ONNX graph (no TensorRT needed).

Under fp16 TensorRT may run any layer in half precision; three places in SAM2 are known to
break there (users report NaN/garbage masks, and the reasons are numeric):

* **LayerNorm** (``LayerNormalization`` nodes, which is also how sam2edge exports ``LayerNorm2d``,
  and the decomposed ReduceMean-Sub-Pow-ReduceMean-Add-Sqrt-Div chains other exporters and older
  exports spell it as): the variance of 256-1152-wide features overflows
  fp16's 65504 range or loses all precision in the mean subtraction.
* **Softmax inputs**: the attention logits q.k^T (the MatMul and the scaling/masking ops up to
  the Softmax) overflow for long memory sequences (memory attention has ~29k keys); the
  Softmax itself is kept in fp32 too.
* **The prompt decoder's final layers**: the hypernetwork / IoU / object-score MLPs and the
  mask product, ``DECODER_HEAD_DEPTH`` weighted layers back from the ``masks``,
  ``iou_predictions`` and ``object_score_logits`` outputs: mask logits are thresholded at 0
  and small absolute errors flip pixels at the boundary.

Only layers whose outputs are all floating point are listed (types from ONNX shape inference): the
decoder-head walk also reaches index arithmetic (Range, Mod, ReduceSum, Expand, Squeeze, Reshape on
int64 feeding a Gather), and TensorRT refuses an fp32 output type on such layers (ILayer::setOutputType:
shape operations stay integer, "all attempts to set the output type to some other data type will be
ignored except for issuing an error message"; a failed build under OBEY_PRECISION_CONSTRAINTS). One
filtered list then serves the builder and the printed trtexec line alike.

The policy is a list of (node, output tensors, rule). TensorRT's ONNX parser names layers
after nodes and keeps node output tensor names, so the build matches a layer by its name or
by any of its output tensors; it also pins every Normalization and SoftMax layer by type.
The same list feeds ``trtexec --layerPrecisions`` and, on TensorRT 11 (strong typing only),
the node block list of the mixed-precision ONNX conversion.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sam2edge.backends import lazy
from sam2edge.contract.artifacts import Artifact, Tensor

DECODER_HEAD_DEPTH = 3
DECODER_HEAD_OUTPUTS = (Tensor.MASKS, Tensor.IOU_PREDICTIONS, Tensor.OBJECT_SCORE_LOGITS)
WEIGHTED_OPS = frozenset({"MatMul", "Gemm", "Conv", "ConvTranspose"})
SCORE_OPS = frozenset({"Mul", "Div", "Add", "Sub", "Where", "Cast", "Transpose", "Reshape"})
UNARY_SCORE_OPS = frozenset({"Cast", "Transpose", "Reshape"})  # follow the data input only
# Ops whose inputs after the first are shapes, indices or axes: the head walk follows only the data
# input, and stops at Shape/Size, so that it does not leak through shape arithmetic into early layers.
DATA_FIRST_OPS = frozenset({"Reshape", "Expand", "Slice", "Tile", "Unsqueeze", "Squeeze", "Pad", "Resize", "Split"})
SHAPE_OPS = frozenset({"Shape", "Size", "Constant", "ConstantOfShape"})
NORM_CHAIN = ("ReduceMean", "Sub", "Pow|Mul", "ReduceMean", "Add", "Sqrt", "Div")


@dataclass(frozen=True)
class Keep:
    node: str
    op_type: str
    outputs: tuple[str, ...]
    rule: str  # "layernorm" | "softmax-input" | "decoder-head"


@dataclass(frozen=True)
class PrecisionPolicy:
    artifact: str
    precision: str
    keep_fp32: tuple[Keep, ...] = ()

    @property
    def node_names(self) -> list[str]:
        return [k.node for k in self.keep_fp32]

    @property
    def tensor_names(self) -> set[str]:
        return {o for k in self.keep_fp32 for o in k.outputs}

    def matches(self, layer_name: str, output_names: Iterable[str] = ()) -> bool:
        """Whether a TensorRT layer (by name or output tensor names) must stay fp32."""
        if not self.keep_fp32:
            return False
        return layer_name in set(self.node_names) or bool(self.tensor_names.intersection(output_names))

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for k in self.keep_fp32:
            out[k.rule] += 1
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "precision": self.precision, "counts": self.counts(),
                "keep_fp32": [{"node": k.node, "op": k.op_type, "rule": k.rule} for k in self.keep_fp32]}


class _Graph:
    def __init__(self, graph: Any) -> None:
        self.nodes = list(graph.node)
        self.names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(self.nodes)]
        self.consts = {i.name for i in graph.initializer}
        self.consts |= {o for n in self.nodes if n.op_type == "Constant" for o in n.output}
        self.producer = {o: i for i, n in enumerate(self.nodes) for o in n.output}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for i, n in enumerate(self.nodes):
            for x in n.input:
                self.consumers[x].append(i)

    def next_of(self, i: int, ops: str) -> list[int]:
        allowed = ops.split("|")
        return [j for o in self.nodes[i].output for j in self.consumers[o] if self.nodes[j].op_type in allowed]

    def has_weight(self, i: int) -> bool:
        return self.nodes[i].op_type in WEIGHTED_OPS and any(x in self.consts for x in self.nodes[i].input[1:])


def precision_policy(model: Any, artifact: str, precision: str) -> PrecisionPolicy:
    """The fp32-pinned nodes of ``model`` (an ``onnx.ModelProto``) for ``precision`` ("fp32" pins none)."""
    if precision == "fp32":
        return PrecisionPolicy(artifact, precision)
    g = _Graph(model.graph)
    rules: dict[int, str] = {}
    for i in _layernorm_nodes(g):
        rules.setdefault(i, "layernorm")
    for i in _softmax_input_nodes(g):
        rules.setdefault(i, "softmax-input")
    if artifact == Artifact.PROMPT_DECODER:
        outputs = [o.name for o in model.graph.output if o.name in DECODER_HEAD_OUTPUTS]
        for i in _head_nodes(g, outputs, DECODER_HEAD_DEPTH):
            rules.setdefault(i, "decoder-head")
    floats = float_tensors(model)
    keep = tuple(Keep(g.names[i], g.nodes[i].op_type, tuple(g.nodes[i].output), r) for i, r in sorted(rules.items())
                 if floats is None or all(o in floats for o in g.nodes[i].output if o))
    return PrecisionPolicy(artifact, precision, keep)


def float_tensors(model: Any) -> set[str] | None:
    """Names of the floating-point tensors of ``model`` by ONNX shape inference; None when inference fails."""
    onnx = lazy.import_onnx("the precision policy")
    try:
        typed = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - an unusual graph: the builder's own dtype check still applies
        return None
    kinds = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE}
    values = (*typed.graph.value_info, *typed.graph.input, *typed.graph.output)
    return {v.name for v in values if v.type.tensor_type.elem_type in kinds}


def _layernorm_nodes(g: _Graph) -> set[int]:
    out = {i for i, n in enumerate(g.nodes) if n.op_type == "LayerNormalization"}
    for i, n in enumerate(g.nodes):
        if n.op_type != "ReduceMean":
            continue
        chain = _follow(g, i, NORM_CHAIN[1:])
        if chain:
            out |= {i, *chain}
            out |= _affine_after(g, chain[-1])
    return out


def _follow(g: _Graph, start: int, ops: tuple[str, ...]) -> list[int] | None:
    """Depth-first match of a consumer chain ``ops`` from node ``start``; the node indices or None."""
    if not ops:
        return []
    for j in g.next_of(start, ops[0]):
        rest = _follow(g, j, ops[1:])
        if rest is not None:
            return [j, *rest]
    return None


def _affine_after(g: _Graph, div: int) -> set[int]:
    """The LayerNorm weight (Mul) and bias (Add) right after the normalising Div."""
    out: set[int] = set()
    for j in g.next_of(div, "Mul"):
        out.add(j)
        out |= set(g.next_of(j, "Add"))
    return out


def _softmax_input_nodes(g: _Graph) -> set[int]:
    out: set[int] = set()
    for i, n in enumerate(g.nodes):
        if n.op_type != "Softmax":
            continue
        out.add(i)
        stack = [n.input[0]]
        while stack:
            j = g.producer.get(stack.pop())
            if j is None or j in out:
                continue
            op = g.nodes[j].op_type
            if op == "MatMul":
                out.add(j)
            elif op in SCORE_OPS:
                out.add(j)
                data = g.nodes[j].input[:1] if op in UNARY_SCORE_OPS else g.nodes[j].input
                stack.extend(x for x in data if x and x not in g.consts)
    return out


def _head_nodes(g: _Graph, outputs: list[str], depth: int) -> set[int]:
    """Nodes on the paths to ``outputs`` until ``depth`` weighted layers (MatMul/Gemm/Conv) have been crossed."""
    out: set[int] = set()
    stack = [(o, 0) for o in outputs]
    seen: dict[int, int] = {}
    while stack:
        name, crossed = stack.pop()
        j = g.producer.get(name)
        if j is None or seen.get(j, depth + 1) <= crossed:
            continue
        seen[j] = crossed
        out.add(j)
        node = g.nodes[j]
        crossed_here = crossed + (1 if g.has_weight(j) else 0)
        if crossed_here >= depth or node.op_type in SHAPE_OPS:
            continue
        data = node.input[:1] if node.op_type in DATA_FIRST_OPS else node.input
        stack.extend((x, crossed_here) for x in data if x and x not in g.consts)
    return {j for j in out if g.nodes[j].op_type not in SHAPE_OPS}
