"""Triton runners: the artifacts served by a Triton Inference Server, over gRPC.

``triton://host:port/<prefix>`` names a repository written by ``sam2edge triton-repo``: one model
per artifact (``<prefix>_image_encoder``, ...), whatever runs it on the server (Triton's ONNX
Runtime or TensorRT backends, or the Python backend around our ONNX Runtime runner). The
predictor, tracker and server above run unchanged; embeddings stay in the caller's cache, so a
click sends only the prompt and the cached features.

A model is used only when it is what this sam2edge expects: ready on the server, with the
inputs and outputs of the artifact's spec and the spec digest the repository writer recorded
in its ``config.pbtxt`` (EngineMismatchError otherwise). A call that fails on the server or on
the way raises BackendRuntimeError. Needs ``tritonclient[grpc]`` (through the lazy helper).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam2edge.backends import lazy
from sam2edge.backends.base import Runner
from sam2edge.backends.registry import RunnerSources
from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.contract.edgetam_artifacts import specs_for_variant
from sam2edge.contract.serving import (
    PARAM_CHECKPOINT,
    PARAM_HOST_CONSTANTS,
    PARAM_SPEC,
    PARAM_VARIANT,
    WIRE_DTYPES,
    TritonAddress,
    parse_triton_url,
    spec_digest,
)
from sam2edge.contract.spec import ArtifactSpec
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError, EngineMismatchError

log = logging.getLogger(__name__)


def connect(address: TritonAddress) -> Any:
    """A gRPC client of the server (thread-safe for ``infer``; one channel shared by the runners)."""
    grpc = lazy.import_tritonclient_grpc()
    return grpc.InferenceServerClient(address.endpoint)


def parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """The string parameters of a model config (``get_model_config(as_json=True)["config"]``)."""
    return {k: str(v.get("string_value", "")) for k, v in dict(config.get("parameters", {})).items()}


def model_config(client: Any, address: TritonAddress, artifact: str) -> dict[str, Any]:
    """The served config of ``artifact``'s model; BackendUnavailableError when unreachable or not ready."""
    name = address.model(artifact)
    try:
        ready = client.is_model_ready(name)
        if not ready:
            raise BackendUnavailableError(f"Triton at {address.endpoint} has no ready model {name!r} ({artifact})")
        return dict(client.get_model_config(name, as_json=True)["config"])
    except lazy.triton_server_error() as exc:
        raise BackendUnavailableError(f"Triton at {address.endpoint}: {name!r} ({artifact}): {exc}") from exc


def check_config(spec: ArtifactSpec, name: str, config: Mapping[str, Any]) -> int:
    """Check a served model against the artifact's spec; returns its max_batch_size (0: no batch axis)."""
    params = parameters(config)
    if PARAM_SPEC not in params:
        raise EngineMismatchError(f"Triton model {name!r} was not written by `sam2edge triton-repo` (no {PARAM_SPEC} "
                                  "parameter); write the repository with it")
    got_in = [(t["name"], t["data_type"]) for t in config.get("input", [])]
    got_out = [(t["name"], t["data_type"]) for t in config.get("output", [])]
    want_in = [(t.name, "TYPE_" + WIRE_DTYPES[t.dtype]) for t in spec.inputs]
    want_out = [(t.name, "TYPE_" + WIRE_DTYPES[t.dtype]) for t in spec.outputs]
    if sorted(got_in) != sorted(want_in) or sorted(got_out) != sorted(want_out) or params[PARAM_SPEC] != spec_digest(spec):
        raise EngineMismatchError(
            f"Triton model {name!r} serves {spec.name} with another interface than this sam2edge expects (inputs "
            f"{got_in}, outputs {got_out}); rewrite the repository with this sam2edge's `sam2edge triton-repo`"
        )
    return int(config.get("max_batch_size", 0) or 0)


class TritonRunner(Runner):
    """Runs one artifact on a Triton server. numpy in, numpy out (writable arrays, like the local runners).

    Args:
        spec: the artifact's spec.
        address: the server and the repository's model prefix.
        client: a shared ``tritonclient.grpc.InferenceServerClient`` (made on activation when None).
        timeout_s: per-call client timeout (None: none).
    """

    backend = "triton"
    thread_safe = True  # the gRPC client's infer is thread-safe

    def __init__(self, spec: ArtifactSpec, address: TritonAddress, client: Any = None, timeout_s: float | None = None) -> None:
        super().__init__(spec)
        self.address = address
        self.model = address.model(spec.name)
        self.client = client
        self.timeout_s = timeout_s
        self.max_batch_size = 0
        self.config: dict[str, Any] = {}

    def _activate_impl(self) -> None:
        if self.client is None:
            self.client = connect(self.address)
        self.config = model_config(self.client, self.address, self.spec.name)
        self.max_batch_size = check_config(self.spec, self.model, self.config)
        log.info("%s: Triton model %s at %s (max_batch_size %d)", self.spec.name, self.model, self.address.endpoint,
                 self.max_batch_size)

    def _deactivate_impl(self) -> None:
        self.config = {}

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {t.name: np.ascontiguousarray(feeds[t.name], dtype=t.dtype) for t in self.spec.inputs}
        total = int(next(iter(arrays.values())).shape[0])
        step = self.max_batch_size if self.max_batch_size > 0 else total
        if total <= step:
            return self._call(arrays)
        # More rows than the server's max_batch_size: one request per slice of the batch axis.
        parts = [self._call({n: a[i:i + step] for n, a in arrays.items()}) for i in range(0, total, step)]
        return {n: np.concatenate([p[n] for p in parts]) for n in self.spec.output_names}

    def _call(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        grpc = lazy.import_tritonclient_grpc()
        inputs = []
        for t in self.spec.inputs:
            item = grpc.InferInput(t.name, list(arrays[t.name].shape), WIRE_DTYPES[t.dtype])
            item.set_data_from_numpy(arrays[t.name])
            inputs.append(item)
        outputs = [grpc.InferRequestedOutput(n) for n in self.spec.output_names]
        try:
            result = self.client.infer(self.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
        except lazy.triton_server_error() as exc:
            raise BackendRuntimeError(f"{self.describe()} failed on Triton at {self.address.endpoint}: {exc}") from exc
        return {n: np.array(result.as_numpy(n)) for n in self.spec.output_names}

    def describe(self) -> str:
        return f"triton:{self.spec.name} [{self.address.endpoint}/{self.model}]"


@dataclass(frozen=True)
class RemoteModel:
    """What a sam2edge repository on a Triton server serves, read from its model configs."""

    address: TritonAddress
    variant: str
    checkpoint_sha256: str | None
    artifacts: tuple[str, ...]
    host_constants: dict[str, Any] | None = field(default=None, compare=False)


def describe_remote(url: str, client: Any = None) -> RemoteModel:
    """The variant, checkpoint and ready artifacts behind ``triton://host:port/prefix``.

    BackendUnavailableError when the server cannot be reached or serves none of the artifacts;
    EngineMismatchError when its models disagree on the variant or checkpoint.
    """
    address = parse_triton_url(url)
    client = client if client is not None else connect(address)
    found: dict[str, dict[str, str]] = {}
    reasons = []
    for artifact in ARTIFACTS:
        try:
            found[artifact] = parameters(model_config(client, address, artifact))
        except BackendUnavailableError as exc:
            reasons.append(str(exc))
    if not found:
        raise BackendUnavailableError(f"no sam2edge model under {url}:\n  " + "\n  ".join(reasons))
    pairs = {(p.get(PARAM_VARIANT), p.get(PARAM_CHECKPOINT)) for p in found.values()}
    if len(pairs) != 1 or None in next(iter(pairs)):
        raise EngineMismatchError(f"the models under {url} do not record one variant and checkpoint ({sorted(map(str, pairs))}); "
                                  "write the repository from one export with `sam2edge triton-repo`")
    variant, checkpoint = next(iter(pairs))
    constants = next((json.loads(p[PARAM_HOST_CONSTANTS]) for p in found.values() if p.get(PARAM_HOST_CONSTANTS)), None)
    return RemoteModel(address, str(variant), checkpoint or None, tuple(found), constants)


def create_runners(sources: RunnerSources, device: str, artifacts: Sequence[str]) -> dict[str, Runner]:
    """The registry factory: active Triton runners of ``sources.remote_url`` (``device`` is the server's business)."""
    if not sources.remote_url:
        raise BackendUnavailableError("the triton backend needs a model URL: from_pretrained('triton://host:port/prefix')")
    address = parse_triton_url(sources.remote_url)
    client = connect(address)
    specs = specs_for_variant(sources.variant)  # EdgeTAM's differ from SAM2's
    runners: dict[str, Runner] = {}
    for name in artifacts:
        runner = TritonRunner(specs[name], address, client)
        runner.activate()
        runners[name] = runner
    return runners
