"""`sam2edge build` against the TensorRT 10 / 11 doubles: verification within the build's limits, the manifest
only after verification, one precision list for trtexec and the builder, the version gate, cuda-python
detection, trtexec lines for the installed major, timing caches, AutoCast options, a read-only ONNX store."""

from __future__ import annotations

import importlib.metadata
import shlex

import numpy as np
import pytest

from sam2edge.backends import lazy
from sam2edge.backends.base import Runner
from sam2edge.cli.main import main
from sam2edge.contract.artifacts import ARTIFACTS, Artifact, Tensor
from sam2edge.contract.manifest import MANIFEST_NAME
from sam2edge.engines import build as build_mod
from sam2edge.engines import tensorrt as trtb
from sam2edge.engines.build import build_engines
from sam2edge.engines.fingerprint import probe_installed
from sam2edge.engines.store import ArtifactStore
from sam2edge.errors import BackendUnavailableError, EngineBuildError

onnx = pytest.importorskip("onnx", reason="the doubles parse ONNX graphs")
pytest.importorskip("onnxruntime", reason="the fake engine computes with ONNX Runtime")
ARTS = [Artifact.PROMPT_DECODER, Artifact.MEMORY_ENCODER]


class SeededEncoder(Runner):
    """A stand-in reference image encoder (the session export has no encoder): seeded features of the spec's shapes."""

    backend = "seeded"

    def _infer_impl(self, feeds):
        rng = np.random.default_rng(int(abs(float(feeds[Tensor.IMAGE].sum()))) % 1000)
        return {t.name: rng.standard_normal(t.shape_at("min")).astype(np.float32) for t in self.spec.outputs}


@pytest.fixture
def with_encoder_reference(monkeypatch):
    """The reference runners of a build's verification, plus the seeded encoder."""
    real = build_mod.make_onnxruntime_runners

    def runners(*args, **kwargs):
        out = real(*args, **kwargs)
        out.setdefault(Artifact.IMAGE_ENCODER, SeededEncoder(ARTIFACTS[Artifact.IMAGE_ENCODER]))
        return out

    monkeypatch.setattr(build_mod, "make_onnxruntime_runners", runners)


def test_verification_stays_inside_the_build_limits(trt_double, store_copy, with_encoder_reference):
    """Certain bug 2: verification fed 3 prompts x 2 points whatever --max-prompts / --max-points said, so
    set_input_shape failed after the engines and the manifest were written."""
    store = ArtifactStore(store_copy)
    onnx_set = store.find_onnx("sam2.1_hiera_tiny")
    limits = trtb.limits_from_options(max_prompts=2, max_points=1, max_batch=2)
    engines = build_engines(onnx_set, store=store, precision="fp32", limits=limits, artifacts=ARTS, say=print)
    figures = engines.manifest["verification"]["figures"]
    print(figures)
    assert set(figures) == set(ARTS)
    # The fake engine runs the same graph in fp32 with ONNX Runtime (other graph fusions than the reference's).
    assert all(f["max_abs_diff"] < 1e-4 for outs in figures.values() for f in outs.values())
    assert figures[Artifact.PROMPT_DECODER][Tensor.MASKS]["mask_iou_min"] > 0.999
    assert (engines.dir / MANIFEST_NAME).is_file() and store.problems(engines, engines.fingerprint, onnx_set) == []


def test_no_manifest_when_verification_fails(trt_double, store_copy, with_encoder_reference):
    """Certain bug 2: the manifest was written before verification, so a failed verification left a set that
    selection would use."""
    store = ArtifactStore(store_copy)
    onnx_set = store.find_onnx("sam2.1_hiera_tiny")
    trt_double.lib.fail_next_execute = "false"  # the first TensorRT enqueue of the verification fails
    with pytest.raises((EngineBuildError, Exception)) as info:
        build_engines(onnx_set, store=store, precision="fp32", artifacts=ARTS, say=print)
    print(type(info.value).__name__, info.value)
    assert store.engine_sets(onnx_set) == [], "a set that failed verification must not be listed"
    assert not list(store_copy.glob(f"*/tensorrt/*/*/{MANIFEST_NAME}"))


def test_policy_pins_only_float_layers(exported_graphs):
    """Certain bug 3: the decoder-head walk reached int64 index arithmetic (Range, Mod, ReduceSum, Expand, Squeeze,
    Reshape) and the trtexec line pinned those layers to fp32; the policy itself must hold float layers only."""
    path = exported_graphs / "prompt_decoder.onnx"
    policy = trtb.load_policy(path, Artifact.PROMPT_DECODER, "fp16")
    typed = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    types = {v.name: v.type.tensor_type.elem_type for v in (*typed.graph.value_info, *typed.graph.output)}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    not_float = [(k.node, k.op_type) for k in policy.keep_fp32 if any(types.get(o) not in floats for o in k.outputs)]
    print(f"{len(policy.keep_fp32)} pinned, not float: {not_float}")
    assert not_float == []
    cmd = shlex.split(trtb.trtexec_command(path, path.with_suffix(".engine"), ARTIFACTS[Artifact.PROMPT_DECODER], "fp16", {},
                                           policy=policy))
    pinned = next(a for a in cmd if a.startswith("--layerPrecisions=")).split("=", 1)[1].split(",")
    assert [p.rsplit(":", 1)[0] for p in pinned] == policy.node_names
    assert policy.counts()["decoder-head"] > 0


def test_fp16_build_obeys_every_precision_constraint(trt_double, store_copy):
    """TensorRT 10 refuses fp32 output types on index layers and fails the build under OBEY; TensorRT 11 has no
    per-layer precision (strong typing): the fp16 build passes on both, with no error logged."""
    store = ArtifactStore(store_copy)
    onnx_set = store.find_onnx("sam2.1_hiera_tiny")
    engines = build_engines(onnx_set, store=store, precision="fp16", artifacts=[Artifact.PROMPT_DECODER], verify=False,
                            say=print)
    assert trt_double.lib.errors() == []
    assert engines.manifest["artifacts"][Artifact.PROMPT_DECODER]["precision_policy"]["keep_fp32"] > 0


def test_tensorrt_before_10_is_refused(monkeypatch):
    """Certain bug 6: JetPack 5's TensorRT 8.5 builds implicit-batch networks the ONNX parser refuses and has no BF16."""
    from tests.tensorrt_double import install

    install(monkeypatch, major=8)
    with pytest.raises(BackendUnavailableError, match=r"TensorRT >= 10.*8\.5\.2\.2") as info:
        lazy.import_tensorrt()
    print(info.value)
    installed = probe_installed(check_providers=False)
    assert installed.tensorrt is None and any("8.5.2.2" in n for n in installed.notes)


def test_cuda_bindings_without_the_cuda_python_metapackage(trt_double):
    """Certain bug 8: since 12.6 cuda-python is a metapackage over cuda-bindings; cuda-bindings alone is enough."""
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("cuda-python")  # not installed here: only the importable module (the double)
    installed = probe_installed(check_providers=False)
    print(installed)
    assert installed.cuda_python is not None and installed.cuda_runtime == "12.6"


def test_print_trtexec_uses_the_installed_major(trt_double, store_copy, capsys):
    """Certain bug 9: --trt-major defaulted to 10; trtexec 11 has no --fp16 / --precisionConstraints / --layerPrecisions."""
    assert main(["build", "sam2.1_hiera_tiny", "--store", str(store_copy), "--print-trtexec",
                 "--artifacts", "prompt_decoder"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("trtexec")]
    print(lines[0][:300])
    assert len(lines) == 1
    if trt_double.major >= 11:
        assert "--stronglyTyped" in lines[0] and "--fp16" not in lines[0] and "--layerPrecisions" not in lines[0]
    else:
        assert "--fp16" in lines[0] and "--layerPrecisions=" in lines[0] and "--stronglyTyped" not in lines[0]


def test_a_timing_cache_from_another_device_is_replaced(trt_double, store_copy):
    """Likely bug: a rejected timing cache (set_timing_cache False) left get_timing_cache() None, and the build
    crashed after TensorRT had built the engine."""
    store = ArtifactStore(store_copy)
    onnx_set = store.find_onnx("sam2.1_hiera_tiny")
    first = build_engines(onnx_set, store=store, precision="fp32", artifacts=[Artifact.MEMORY_ENCODER], verify=False)
    foreign = trt_double.trt.ITimingCache("NVIDIA Other GPU", 5).serialize()
    (first.dir / "timing.cache").write_bytes(bytes(foreign))
    again = build_engines(onnx_set, store=store, precision="fp32", artifacts=[Artifact.MEMORY_ENCODER], verify=False)
    assert b"NVIDIA Fake GPU" in (again.dir / "timing.cache").read_bytes()


def test_tensorrt_11_mixed_precision_graph(trt_double, store_copy):
    """Likely bugs (TensorRT 11): AutoCast's reference run (every intermediate as an output, on random data) is
    skipped, and the mixed-precision graph is not written into the read-only ONNX store."""
    if trt_double.major < 11:
        pytest.skip("TensorRT 10 builds fp16 from the fp32 graph (weak typing)")
    store = ArtifactStore(store_copy)
    onnx_set = store.find_onnx("sam2.1_hiera_tiny")
    before = sorted(p.name for p in onnx_set.dir.iterdir())
    build_engines(onnx_set, store=store, precision="fp16", artifacts=[Artifact.MEMORY_ENCODER], verify=False)
    (call,) = trt_double.autocast_calls
    print(call)
    assert call["reference_run"] is False and call["keep_io_types"] is True and call["nodes_to_exclude"]
    assert sorted(p.name for p in onnx_set.dir.iterdir()) == before


def test_fingerprint_takes_cuda_from_the_tensorrt_wheel(trt_double, monkeypatch):
    """Likely bug: the fingerprint's CUDA version came from cuda-bindings' runtime, not from TensorRT's build
    (wheels are named tensorrt-cu<major>, tensorrt_build_backend)."""
    from sam2edge.engines import fingerprint

    class Dist:
        metadata = {"Name": "tensorrt-cu13-libs"}

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [Dist()])
    installed = probe_installed(check_providers=False)
    assert installed.tensorrt_cuda == "13"
    fp = fingerprint.engine_fingerprint(fingerprint.probe_device(), installed)
    assert fp is not None and fp.cuda_major == "13"
