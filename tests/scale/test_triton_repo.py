"""The Triton repository writer without a server: configs parse into Triton's ModelConfig and match the specs,
files are hash-checked, engines are served one plan per GPU model, and the triton backend is selected only for
a served model. Placeholder artifacts: nothing here runs a network."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sam2edge.backends.triton_runner import check_config
from sam2edge.contract.artifacts import ARTIFACTS, Artifact
from sam2edge.contract.serving import (
    PARAM_FILE_SHA256,
    PARAM_HOST_CONSTANTS,
    PARAM_SPEC,
    PARAM_VARIANT,
    WIRE_DTYPES,
    parse_triton_url,
    spec_digest,
)
from sam2edge.contract.spec import Dim
from sam2edge.errors import EngineMismatchError, InputError, IntegrityError
from sam2edge.scale.triton_config import Serving
from sam2edge.scale.triton_repo import REPOSITORY_RECORD, write_repository
from tests.engines.recorded import JETSON_INSTALLED, JETSON_ORIN_NANO, RTX_FREE, RTX_INSTALLED, fingerprint_of, make_engine_set

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="needs tritonclient[grpc]")
text_format = pytest.importorskip("google.protobuf.text_format")
PREFIX = "sam2_1_hiera_tiny"
DTYPE_ENUM = {name: model_config_pb2.DataType.Value("TYPE_" + wire) for name, wire in WIRE_DTYPES.items()}


def parse(path: Path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def params(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def check_against_spec(config, artifact: str, batched: bool) -> None:
    spec = ARTIFACTS[artifact]
    for got, want in ((config.input, spec.inputs), (config.output, spec.outputs)):
        assert [t.name for t in got] == [t.name for t in want]
        for g, w in zip(got, want):
            assert g.data_type == DTYPE_ENUM[w.dtype], (artifact, w.name)
            shape = w.shape[1:] if batched else w.shape
            assert list(g.dims) == [-1 if isinstance(d, Dim) else d for d in shape], (artifact, w.name, list(g.dims))


def test_python_repository_configs_parse_and_match_the_specs(fake_export, tmp_path):
    out = tmp_path / "repo"
    written = write_repository(fake_export, out, "python", Serving(kind="cpu", instances=2), threads=2)
    assert [w.artifact for w in written] == list(ARTIFACTS)
    manifest = json.loads((fake_export / "manifest.json").read_text())
    for w in written:
        config = parse(out / w.name / "config.pbtxt")
        batched = w.artifact == Artifact.IMAGE_ENCODER  # the only true batch axis
        assert config.name == w.name == f"{PREFIX}_{w.artifact}" and config.backend == "python"
        assert config.max_batch_size == (8 if batched else 0) == w.max_batch_size
        assert config.HasField("dynamic_batching") == batched
        assert [(g.count, g.kind) for g in config.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
        check_against_spec(config, w.artifact, batched)
        p = params(config)
        assert p[PARAM_VARIANT] == "sam2.1_hiera_tiny" and p[PARAM_SPEC] == spec_digest(ARTIFACTS[w.artifact])
        assert p[PARAM_FILE_SHA256] == manifest["files"][f"{w.artifact}.onnx"]["sha256"]
        assert json.loads(p[PARAM_HOST_CONSTANTS]) == {"no_obj_ptr": [0.25, -0.5]}
        version = out / w.name / "1"
        assert hashlib.sha256((version / f"{w.artifact}.onnx").read_bytes()).hexdigest() == p[PARAM_FILE_SHA256]
        assert (version / "model.py").is_file() and (version / "sam2edge" / "backends" / "onnxruntime_runner.py").is_file()
        assert not list(version.rglob("__pycache__"))
        assert check_config(ARTIFACTS[w.artifact], w.name, _as_served_json(config)) == config.max_batch_size
    write_repository(fake_export, out, "python", prefix="second", artifacts=[Artifact.PROMPT_DECODER])
    writes = json.loads((out / REPOSITORY_RECORD).read_text())["writes"]
    assert [(w["prefix"], len(w["models"])) for w in writes] == [(PREFIX, 4), ("second", 1)]


def _as_served_json(config) -> dict:
    """What get_model_config(as_json=True)["config"] returns for a config (protobuf JSON, field names kept)."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(config, preserving_proto_field_name=True)


def test_onnxruntime_configs_batch_only_the_encoder(fake_export, tmp_path):
    on = write_repository(fake_export, tmp_path / "on", "onnxruntime", Serving(max_batch_size=4, max_queue_delay_us=500))
    off = write_repository(fake_export, tmp_path / "off", "onnxruntime", Serving(dynamic_batching=False), prefix="")
    for w in on:
        config = parse(tmp_path / "on" / w.name / "config.pbtxt")
        assert config.platform == "onnxruntime_onnx" and config.default_model_filename == f"{w.artifact}.onnx"
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
        batched = w.artifact == Artifact.IMAGE_ENCODER
        assert config.max_batch_size == (4 if batched else 0)
        assert (config.dynamic_batching.max_queue_delay_microseconds if batched else None) == (500 if batched else None)
        check_against_spec(config, w.artifact, batched)
    assert [w.name for w in off] == list(ARTIFACTS)  # an empty prefix: the artifact names themselves
    encoder = parse(tmp_path / "off" / Artifact.IMAGE_ENCODER / "config.pbtxt")
    assert encoder.max_batch_size == 8 and not encoder.HasField("dynamic_batching")


def test_tensorrt_repository_has_one_plan_per_gpu_model(fake_export, tmp_path):
    rtx = make_engine_set(fake_export, fingerprint_of(RTX_FREE, RTX_INSTALLED), batch_max=4)
    orin = make_engine_set(fake_export, fingerprint_of(JETSON_ORIN_NANO, JETSON_INSTALLED), batch_max=8)
    out = tmp_path / "repo"
    written = write_repository(fake_export, out, "tensorrt", store_root=fake_export.parents[1])
    for w in written:
        config = parse(out / w.name / "config.pbtxt")
        assert config.platform == "tensorrt_plan" and not config.default_model_filename  # two GPU models: no default
        files = dict(config.cc_model_filenames)
        assert set(files) == {"8.9", "8.7"}
        for cc, engines in (("8.9", rtx), ("8.7", orin)):
            recorded = json.loads((engines / "manifest.json").read_text())["artifacts"][w.artifact]
            assert hashlib.sha256((out / w.name / "1" / files[cc]).read_bytes()).hexdigest() == recorded["sha256"]
        assert params(config)["sam2edge_tensorrt_sm89"] == RTX_INSTALLED.tensorrt
        assert config.max_batch_size == (4 if w.artifact == Artifact.IMAGE_ENCODER else 0)  # the smaller engine range
        check_against_spec(config, w.artifact, config.max_batch_size > 0)


def test_tensorrt_refuses_stale_and_ambiguous_engines(fake_export, tmp_path):
    store = fake_export.parents[1]
    first = make_engine_set(fake_export, fingerprint_of(RTX_FREE, RTX_INSTALLED))
    newer = RTX_INSTALLED.__class__(**{**RTX_INSTALLED.to_dict(), "tensorrt": "10.9.0", "ort_providers": (), "notes": ()})
    second = make_engine_set(fake_export, fingerprint_of(RTX_FREE, newer))
    with pytest.raises(EngineMismatchError, match="--engine-set"):
        write_repository(fake_export, tmp_path / "a", "tensorrt", store_root=store)
    written = write_repository(fake_export, tmp_path / "b", "tensorrt", store_root=store, engines=[str(second)])
    config = parse(tmp_path / "b" / written[0].name / "config.pbtxt")
    assert config.default_model_filename.endswith(f"{second.name}.plan")  # one GPU model: it is the default too
    reexport = json.loads((fake_export / "manifest.json").read_text())  # a new export of the decoder since the build
    data = b"re-exported"
    (fake_export / "prompt_decoder.onnx").write_bytes(data)
    entry = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    reexport["files"]["prompt_decoder.onnx"] = entry
    reexport["artifacts"]["prompt_decoder"].update(entry)
    (fake_export / "manifest.json").write_text(json.dumps(reexport))
    with pytest.raises(EngineMismatchError, match="stale"):
        write_repository(fake_export, tmp_path / "c", "tensorrt", store_root=store, engines=[str(first)])


def test_a_damaged_file_is_refused_and_leaves_no_model_folder(fake_export, tmp_path):
    path = fake_export / "prompt_decoder.onnx"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    out = tmp_path / "repo"
    with pytest.raises(IntegrityError, match="prompt_decoder.onnx"):
        write_repository(fake_export, out, "onnxruntime")
    assert (out / f"{PREFIX}_image_encoder").is_dir() and not (out / f"{PREFIX}_prompt_decoder").exists()
    with pytest.raises(InputError, match="exists"):  # never written over without asking
        write_repository(fake_export, out, "onnxruntime", artifacts=[Artifact.IMAGE_ENCODER])


def test_a_served_model_with_another_interface_is_refused():
    spec = ARTIFACTS[Artifact.PROMPT_DECODER]
    good = {"max_batch_size": 0, "parameters": {PARAM_SPEC: {"string_value": spec_digest(spec)}},
            "input": [{"name": t.name, "data_type": "TYPE_" + WIRE_DTYPES[t.dtype]} for t in spec.inputs],
            "output": [{"name": t.name, "data_type": "TYPE_" + WIRE_DTYPES[t.dtype]} for t in spec.outputs]}
    assert check_config(spec, "m", good) == 0
    with pytest.raises(EngineMismatchError, match="another interface"):
        check_config(spec, "m", {**good, "parameters": {PARAM_SPEC: {"string_value": "0" * 64}}})
    with pytest.raises(EngineMismatchError, match="another interface"):
        check_config(spec, "m", {**good, "input": good["input"][1:]})
    with pytest.raises(EngineMismatchError, match="not written by"):
        check_config(spec, "m", {**good, "parameters": {}})


def test_triton_urls_and_the_selection_of_a_served_model():
    from sam2edge.engines.fingerprint import Installed, probe_device
    from sam2edge.runtime.selection import Request, Sources, decide

    a = parse_triton_url("triton://gpu-box:9001/sam2_1_hiera_tiny")
    assert (a.endpoint, a.model(Artifact.IMAGE_ENCODER)) == ("gpu-box:9001", "sam2_1_hiera_tiny_image_encoder")
    assert parse_triton_url("triton://[::1]/").endpoint == "[::1]:8001"
    for bad in ("http://h:8001/x", "triton://:8001/x", "triton://h:port/x", "triton://h:8001/a b"):
        with pytest.raises(InputError):
            parse_triton_url(bad)
    remote = Sources("sam2.1_hiera_tiny", remote_url="triton://h:8001/p")
    d = decide(probe_device(), Installed(tritonclient="2.73.0"), remote, Request(backend="triton", device="cuda", strict=True))
    assert [(c.backend, c.device, c.admitted) for c in d.candidates] == [("triton", "remote", True)]  # no GPU needed here
    d = decide(probe_device(), Installed(), remote, Request(backend="triton", strict=True))
    assert d.chosen is None and "tritonclient is not installed" in d.candidates[0].reason
    local = decide(probe_device(), Installed(tritonclient="2.73.0"), Sources("sam2.1_hiera_tiny", onnx_dir="/x"), Request())
    assert "triton" not in [c.backend for c in local.candidates]  # never a fallback of a local model


def test_cli_writes_a_repository(fake_export, tmp_path, capsys):
    from sam2edge.cli.main import main

    out = tmp_path / "repo"
    code = main(["triton-repo", str(fake_export.parent), "--out", str(out), "--platform", "python", "--instances", "3",
                 "--artifacts", Artifact.IMAGE_ENCODER, Artifact.PROMPT_DECODER, "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prefix"] == PREFIX and [m["artifact"] for m in report["models"]] == list(Artifact.IMAGE)
    assert parse(out / f"{PREFIX}_prompt_decoder" / "config.pbtxt").instance_group[0].count == 3
    assert main(["triton-repo", str(fake_export.parent), "--out", str(out)]) == 1  # exists: refused, exit 1


def test_an_edgetam_export_is_written_with_its_own_specs(tmp_path):
    # EdgeTAM's artifacts have SAM2's names but other shapes (a perceiver's 512 memory tokens per frame):
    # the repository, its spec digests and the configs follow the export's variant, not SAM2's specs.
    from sam2edge.contract.edgetam_artifacts import specs_for_variant
    from tests.scale.conftest import make_fake_export

    edgetam = specs_for_variant("edgetam")
    assert edgetam[Artifact.MEMORY_ATTENTION] != ARTIFACTS[Artifact.MEMORY_ATTENTION]
    onnx = make_fake_export(tmp_path / "store", variant="edgetam")
    written = write_repository(onnx, tmp_path / "repo", "onnxruntime", Serving())
    for w in written:
        config = parse(tmp_path / "repo" / w.name / "config.pbtxt")
        assert params(config)[PARAM_SPEC] == spec_digest(edgetam[w.artifact])
        assert params(config)[PARAM_VARIANT] == "edgetam"
        want = edgetam[w.artifact]
        assert [t.name for t in config.input] == [t.name for t in want.inputs]
