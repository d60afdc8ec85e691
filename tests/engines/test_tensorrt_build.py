"""Engine-build data without TensorRT: profiles from the specs, the precision policy from real
graphs, trtexec command lines. The TensorRT build itself is tested in test_tensorrt_device.py."""

from __future__ import annotations

import shlex

import numpy as np
import pytest

from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.engines import tensorrt as trtb
from sam2edge.engines.precision import precision_policy

onnx = pytest.importorskip("onnx", reason="the precision policy is derived from ONNX graphs")


def test_limits_map_to_spec_dims():
    assert trtb.limits_from_options(max_batch=4, max_points=8, max_memory_frames=None) == {
        "batch": 4, "num_objects": 4, "num_points": 8}
    with pytest.raises(ValueError, match=">= 1"):
        trtb.limits_from_options(max_batch=0)
    with pytest.raises(ValueError, match="unknown limit"):
        trtb.limits_from_options(max_frobs=3)


def test_profiles_follow_the_specs_and_limits():
    enc = trtb.profile_for(ARTIFACTS["image_encoder"], {"batch": 4})
    assert enc == {"image": ((1, 3, 1024, 1024), (1, 3, 1024, 1024), (4, 3, 1024, 1024))}
    default = trtb.profile_for(ARTIFACTS["image_encoder"], {})
    assert default["image"][2][0] == ARTIFACTS["image_encoder"].dims()["batch"].max
    dec = trtb.profile_for(ARTIFACTS["prompt_decoder"], trtb.limits_from_options(max_points=1, max_prompts=16))
    points = ARTIFACTS["prompt_decoder"].dims()["num_points"]
    assert points.opt > 1  # the limit clamps opt and min below the new max
    assert dec["point_coords"] == ((1, 1, 2), (1, 1, 2), (16, 1, 2))
    assert dec["point_labels"] == ((1, 1), (1, 1), (16, 1))
    assert dec["image_embed"] == ((1, 256, 64, 64), (1, 256, 64, 64), (8, 256, 64, 64))  # 1 shared, or 1 per object
    mem = trtb.profile_for(ARTIFACTS["memory_attention"], trtb.limits_from_options(max_memory_frames=9, max_batch=3))
    assert mem["memory"][2] == (3, 9, 64, 64, 64) and mem["memory_tpos"][2] == (9,)
    for spec in ARTIFACTS.values():  # every input has a profile, and min <= opt <= max everywhere
        prof = trtb.profile_for(spec, {})
        assert set(prof) == set(spec.input_names)
        for lo, opt, hi in prof.values():
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi))


def test_io_bytes_match_the_buffers():
    enc = ARTIFACTS["image_encoder"]
    per_image = (3 * 1024 * 1024 + 2 * 256 * 64 * 64 + 32 * 256 * 256 + 64 * 128 * 128) * 4
    assert trtb.io_bytes(enc, {"batch": 1}) == per_image
    assert trtb.io_bytes(enc, {"batch": 4}) == 4 * per_image


def test_policy_on_the_real_prompt_decoder(exported_graphs):
    model = onnx.load(str(exported_graphs / "prompt_decoder.onnx"), load_external_data=False)
    policy = precision_policy(model, "prompt_decoder", "fp16")
    nodes = {n.name: n for n in model.graph.node}
    kept = set(policy.node_names)
    print("prompt_decoder policy:", policy.counts(), f"of {len(nodes)} nodes")
    layernorms = {n for n, node in nodes.items() if node.op_type == "LayerNormalization"}
    softmaxes = {n for n, node in nodes.items() if node.op_type == "Softmax"}
    assert layernorms and layernorms <= kept
    assert softmaxes and softmaxes <= kept
    # The q.k^T MatMul feeding each Softmax (through scaling / masking / head-reshaping ops) is kept too.
    producers = {o: n for n in model.graph.node for o in n.output}
    pinned = {k.node for k in policy.keep_fp32 if k.rule == "softmax-input" and k.op_type == "MatMul"}
    for s in softmaxes:
        frontier, upstream = [nodes[s]], set()
        while frontier:
            for name in frontier.pop().input:
                p = producers.get(name)
                if p is None or p.name in upstream:
                    continue
                upstream.add(p.name)
                if p.op_type in ("Mul", "Add", "Div", "Sub", "Where", "Cast", "Reshape", "Transpose"):
                    frontier.append(p)
        assert any(nodes[u].op_type == "MatMul" and u in pinned for u in upstream), f"score MatMul of {s} not pinned"
    heads = {k.node for k in policy.keep_fp32 if k.rule == "decoder-head"}
    for out in ("masks", "iou_predictions", "object_score_logits"):  # each head's last layers are pinned
        frontier, seen = [out], set()
        while frontier:
            p = producers.get(frontier.pop())
            if p is not None and p.name not in seen:
                seen.add(p.name)
                frontier.extend(p.input)
        assert heads & seen, f"no fp32-pinned layer feeds {out}"
    # Targeted, not "everything": the head walk crosses 3 weighted layers and does not leak through shape
    # arithmetic (Shape -> Gather -> Concat -> Reshape) into the early transformer layers.
    consts = {i.name for i in model.graph.initializer} | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    weighted = [n.name for n in model.graph.node
                if n.op_type in ("MatMul", "Gemm", "Conv", "ConvTranspose") and any(x in consts for x in n.input[1:])]
    pinned_weighted = [n for n in weighted if n in heads]
    print(f"decoder-head pins {len(pinned_weighted)} of {len(weighted)} weighted layers")
    assert len(pinned_weighted) < len(weighted) / 2
    assert weighted[4] not in kept, "the first transformer layer's projections must stay in reduced precision"
    assert len(kept) < len(nodes) / 3
    assert precision_policy(model, "prompt_decoder", "fp32").keep_fp32 == ()
    # TensorRT layers match by name or by their output tensor.
    k = policy.keep_fp32[0]
    assert policy.matches(k.node) and policy.matches("renamed-layer", [k.outputs[0]]) and not policy.matches("x", ["y"])


def test_policy_pins_every_layernorm2d_of_the_memory_encoder(exported_graphs):
    """Exported LayerNorm2d is Transpose + LayerNormalization + Transpose above 16 channels and the explicit
    ReduceMean-Sub-Pow-ReduceMean-Add-Sqrt-Div-Mul-Add chain at 4 and 16 channels (model/common.py): all pinned."""
    model = onnx.load(str(exported_graphs / "memory_encoder.onnx"), load_external_data=False)
    policy = precision_policy(model, "memory_encoder", "fp16")
    print("memory_encoder policy:", policy.counts())
    norms = {n.name for n in model.graph.node if n.op_type == "LayerNormalization"}
    reductions = {n.name for n in model.graph.node if n.op_type in ("ReduceMean", "Sqrt")}
    # Mask downsampler: 4-, 16-channel maps explicit, 64- and 256-channel fused; 2 more in the fuser's CXBlocks.
    assert len(norms) == 4 and len(reductions) == 6, (norms, reductions)
    pinned = {k.node for k in policy.keep_fp32 if k.rule == "layernorm"}
    assert norms | reductions <= pinned
    assert len(pinned) == len(norms) + 2 * 9  # each explicit chain pinned whole, affine included
    assert not any(k.rule == "decoder-head" for k in policy.keep_fp32)


def test_policy_finds_a_decomposed_layernorm2d():
    """Graphs from other exporters (or older sam2edge exports) spell LayerNorm2d out as
    ReduceMean-Sub-Pow-ReduceMean-Add-Sqrt-Div plus the affine Mul/Add: the whole chain is pinned."""
    from onnx import TensorProto, helper, numpy_helper

    consts = {"axes": np.array([1], np.int64), "two": np.array(2.0, np.float32), "eps": np.array(1e-6, np.float32),
              "w": np.ones((4, 1, 1), np.float32), "b": np.zeros((4, 1, 1), np.float32)}
    chain = [("ReduceMean", ["x", "axes"], "m"), ("Sub", ["x", "m"], "d"), ("Pow", ["d", "two"], "d2"),
             ("ReduceMean", ["d2", "axes"], "v"), ("Add", ["v", "eps"], "ve"), ("Sqrt", ["ve"], "sd"),
             ("Div", ["d", "sd"], "n"), ("Mul", ["n", "w"], "nw"), ("Add", ["nw", "b"], "y")]
    nodes = [helper.make_node(op, ins, [out], name=f"ln_{out}") for op, ins, out in chain]
    nodes.append(helper.make_node("Relu", ["y"], ["out"], name="after"))
    graph = helper.make_graph(nodes, "ln2d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    policy = precision_policy(helper.make_model(graph), "memory_encoder", "fp16")
    assert {k.node for k in policy.keep_fp32 if k.rule == "layernorm"} == {f"ln_{out}" for _, _, out in chain}


def test_trtexec_commands(exported_graphs, tmp_path):
    spec = ARTIFACTS["prompt_decoder"]
    policy = trtb.load_policy(exported_graphs / "prompt_decoder.onnx", "prompt_decoder", "fp16")
    limits = trtb.limits_from_options(max_prompts=16, max_points=4)
    cmd = trtb.trtexec_command(exported_graphs / "prompt_decoder.onnx", tmp_path / "prompt_decoder.engine", spec,
                               "fp16", limits, 2 << 30, policy, tmp_path / "timing.cache")
    print(cmd[:400], "...")
    args = shlex.split(cmd)
    assert args[0] == "trtexec" and f"--saveEngine={tmp_path / 'prompt_decoder.engine'}" in args
    opts = dict(a.split("=", 1) for a in args[1:] if "=" in a)
    assert opts["--maxShapes"].split(",")[3:5] == ["point_coords:16x4x2", "point_labels:16x4"]
    assert opts["--minShapes"].startswith("image_embed:1x256x64x64,")
    assert opts["--memPoolSize"] == "workspace:2048M" and opts["--timingCacheFile"] == str(tmp_path / "timing.cache")
    assert "--fp16" in args and opts["--precisionConstraints"] == "obey"
    pinned = [p.rsplit(":", 1) for p in opts["--layerPrecisions"].split(",")]
    assert [n for n, _ in pinned] == policy.node_names and {p for _, p in pinned} == {"fp32"}
    fp32 = shlex.split(trtb.trtexec_command(exported_graphs / "prompt_decoder.onnx", tmp_path / "e", spec, "fp32", {}))
    assert "--noTF32" in fp32 and not any(a.startswith("--layerPrecisions") for a in fp32)
    v11 = shlex.split(trtb.trtexec_command(exported_graphs / "prompt_decoder.onnx", tmp_path / "e", spec, "fp16", {},
                                           policy=policy, trt_major=11))
    assert "--stronglyTyped" in v11 and "--fp16" not in v11


def test_engine_record(exported_graphs):
    spec = ARTIFACTS["memory_encoder"]
    policy = trtb.load_policy(exported_graphs / "memory_encoder.onnx", "memory_encoder", "fp16")
    plan = np.arange(1000, dtype=np.uint8).tobytes()
    rec = trtb.engine_record("memory_encoder", plan, exported_graphs / "memory_encoder.onnx", "cafe", spec,
                             {"num_objects": 2}, policy, 12345)
    assert rec["size"] == 1000 and len(rec["sha256"]) == 64 and rec["device_memory_bytes"] == 12345
    assert rec["dims"]["num_objects"] == {"min": 1, "opt": 1, "max": 2}
    assert rec["io_bytes"] == trtb.io_bytes(spec, {"num_objects": 2})
    assert rec["precision_policy"]["counts"] == policy.counts()
