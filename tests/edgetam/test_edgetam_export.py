"""EdgeTAM's artifacts exported to ONNX (dynamo, opset 18): verified in ONNX Runtime against the model as
loaded, TensorRT-parser clean, the RepViT trunk re-parameterised into plain convolutions.

One export per session (tests/edgetam/conftest.py ``edgetam_export``: ``sam2edge export`` on the
session's random checkpoint); these tests read its graphs and the parity its manifest records.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

NAMES = ("image_encoder", "prompt_decoder", "memory_encoder", "memory_attention")


@pytest.mark.parametrize("name", NAMES)
def test_graph_verified_and_trt_compatible(edgetam_export, name):
    from sam2edge.contract.artifacts import tolerance
    from sam2edge.contract.edgetam_artifacts import EDGETAM_ARTIFACTS
    from sam2edge.contract.manifest import spec_to_dict
    from sam2edge.export.trt_compat import check_graph

    out, entries = edgetam_export.onnx_dir, edgetam_export.manifest["artifacts"]
    spec = EDGETAM_ARTIFACTS[name]
    assert entries[name]["spec"] == spec_to_dict(spec)  # the manifest records EdgeTAM's interface, not SAM2's
    report = check_graph(onnx.load(str(out / f"{name}.onnx")), spec)
    parity = entries[name]["parity"]
    print(f"[edgetam export] {name}: {sum(report.op_counts.values())} nodes, max |onnx - torch| {parity['max_abs']}, "
          f"largest |value| {parity['reference_max_abs']}, bounds {parity['tolerance']}")
    assert report.ok, report.problems
    assert "If" not in report.op_counts and "Loop" not in report.op_counts
    for o in spec.output_names:
        assert parity["max_abs"][o] <= tolerance(spec, o, parity["reference_max_abs"][o])
    if name == "image_encoder":  # re-parameterised: no BatchNorm left, every conv carries its folded bias
        assert "BatchNormalization" not in report.op_counts
        graph = onnx.load(str(out / f"{name}.onnx")).graph
        assert all(len(n.input) == 3 for n in graph.node if n.op_type == "Conv")


def test_memory_artifacts_at_other_shapes(edgetam_export, edgetam_model):
    """ONNX Runtime at object / frame / pointer counts that export-time verification did not use."""
    from sam2edge.backends.onnxruntime_runner import OnnxRuntimeRunner
    from sam2edge.backends.torch_runner import make_torch_runners
    from sam2edge.contract.edgetam_artifacts import EDGETAM_ARTIFACTS

    out = edgetam_export.onnx_dir
    torch_runners = make_torch_runners(edgetam_model, artifacts=("memory_encoder", "memory_attention"))
    rng = np.random.default_rng(5)
    feeds = {
        "memory_encoder": {
            "vision_features": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
            "mask_logits": (rng.standard_normal((2, 1, 256, 256)) * 4).astype(np.float32),
            "is_mask_from_points": np.zeros(2, np.float32),
            "object_score_logits": np.ones((2, 1), np.float32),
        },
        "memory_attention": {
            "vision_features": rng.standard_normal((1, 256, 64, 64)).astype(np.float32),
            "memory": rng.standard_normal((2, 2, 512, 64)).astype(np.float32),
            "memory_tpos": np.array([6, 0], np.int32),
            "obj_ptrs": rng.standard_normal((2, 6, 256)).astype(np.float32),
            "obj_ptr_offsets": np.zeros(6, np.float32),
        },
    }
    for name, feed in feeds.items():
        with OnnxRuntimeRunner(EDGETAM_ARTIFACTS[name], out / f"{name}.onnx", threads=2) as runner:
            got = runner.infer(feed)
        ref = torch_runners[name].infer(feed)
        for o, value in ref.items():
            d = float(np.abs(got[o] - value).max())
            print(f"[edgetam export] {name} {o} {value.shape}: max |onnx - torch| {d:.2e}")
            assert got[o].shape == value.shape and d <= 1e-4
    assert ref["image_embed"].shape == (2, 256, 64, 64)


def test_fp16_policy_pins_the_perceiver(edgetam_export):
    """The fp16 policy (sam2edge.engines.precision) keeps the perceiver's LayerNorms and every attention
    softmax input of the memory encoder in fp32, as it does memory attention's: the precision risks the
    issue names. (Derived from the ONNX graph; building and running fp16 engines needs a GPU.)"""
    from sam2edge.engines.precision import precision_policy

    for name in ("memory_encoder", "memory_attention"):
        graph = onnx.load(str(edgetam_export.onnx_dir / f"{name}.onnx"))
        ops = {}
        for n in graph.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        rules = {}
        for keep in precision_policy(graph, name, "fp16").keep_fp32:
            rules[keep.rule] = rules.get(keep.rule, 0) + 1
        print(f"[edgetam fp16 policy] {name}: {ops.get('Softmax', 0)} Softmax, {ops.get('LayerNormalization', 0)} "
              f"LayerNormalization; fp32-pinned nodes by rule {rules}")
        assert ops.get("Softmax", 0) > 0 and rules.get("softmax-input", 0) >= ops["Softmax"]
        assert rules.get("layernorm", 0) >= ops.get("LayerNormalization", 0) > 0
