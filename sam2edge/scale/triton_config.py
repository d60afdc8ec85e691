"""``config.pbtxt`` of one artifact, derived from its spec.

Names, dtypes and dims come from the artifact's :class:`~sam2edge.contract.spec.ArtifactSpec`
(symbolic dims become -1). ``max_batch_size`` and ``dynamic_batching`` are written only for an
artifact whose axis 0 is a true batch axis of every tensor (:data:`~sam2edge.contract.serving.BATCH_DIMS`:
the image encoder); the batch axis then leaves ``dims``, as Triton wants. Everything else gets
``max_batch_size: 0`` and its full shape: the decoder's prompts share one image's features, so
two users' clicks cannot be concatenated into one call (see ``contract/serving.py``).

The text is Triton's protobuf text format; it parses into ``tritonclient.grpc.model_config_pb2.ModelConfig``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sam2edge.contract.serving import CONFIG_DTYPES, batch_dim
from sam2edge.contract.spec import ArtifactSpec, Dim, TensorSpec
from sam2edge.errors import InputError

PLATFORMS = ("onnxruntime", "tensorrt", "python")
# How each platform is named in a config: (field, value).
_RUNTIME = {"onnxruntime": ("platform", "onnxruntime_onnx"), "tensorrt": ("platform", "tensorrt_plan"),
            "python": ("backend", "python")}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}


@dataclass(frozen=True)
class Serving:
    """How Triton should serve the models (the same for every model of a repository).

    instances: model instances per device (concurrent executions of one model).
    kind: "gpu" or "cpu" (instance_group kind); gpus: device ids (empty: all).
    dynamic_batching: let Triton batch requests of models with a true batch axis.
    max_queue_delay_us: how long a request may wait for others to join its batch (0: batches form
        only from requests already queued, so an idle server adds no latency).
    max_batch_size: cap on the batch axis (None: the spec's, or the engines', maximum).
    """

    instances: int = 1
    kind: str = "gpu"
    gpus: tuple[int, ...] = ()
    dynamic_batching: bool = True
    max_queue_delay_us: int = 0
    max_batch_size: int | None = None
    extra_parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.instances, int) or self.instances < 1:
            raise InputError(f"instances must be an integer >= 1, got {self.instances!r}")
        if self.kind not in KINDS:
            raise InputError(f"kind must be one of {list(KINDS)}, got {self.kind!r}")
        if not isinstance(self.max_queue_delay_us, int) or self.max_queue_delay_us < 0:
            raise InputError(f"max_queue_delay_us must be an integer >= 0, got {self.max_queue_delay_us!r}")
        if self.max_batch_size is not None and (not isinstance(self.max_batch_size, int) or self.max_batch_size < 1):
            raise InputError(f"max_batch_size must be an integer >= 1, got {self.max_batch_size!r}")


def max_batch_size(spec: ArtifactSpec, serving: Serving, engine_max: int | None = None) -> int:
    """0 for an artifact without a true batch axis; else the smallest of the spec's, the engines' and the asked maximum."""
    dim = batch_dim(spec.name)
    if dim is None:
        return 0
    limits = [dim.max] + [v for v in (engine_max, serving.max_batch_size) if v is not None]
    return max(1, min(limits))


def _dims(t: TensorSpec, batched: bool) -> str:
    shape = t.shape[1:] if batched else t.shape
    return ", ".join("-1" if isinstance(d, Dim) else str(int(d)) for d in shape)


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _tensors(key: str, tensors: tuple[TensorSpec, ...], batched: bool) -> list[str]:
    rows = [f'  {{ name: {_quote(t.name)} data_type: {CONFIG_DTYPES[t.dtype]} dims: [ {_dims(t, batched)} ] }}'
            for t in tensors]
    return [f"{key} ["] + [r + ("," if i < len(rows) - 1 else "") for i, r in enumerate(rows)] + ["]"]


def config_text(spec: ArtifactSpec, name: str, platform: str, serving: Serving, parameters: Mapping[str, str],
                default_model_filename: str | None = None, cc_model_filenames: Mapping[str, str] | None = None,
                engine_max_batch: int | None = None) -> str:
    """The ``config.pbtxt`` of ``spec`` served as model ``name`` on ``platform`` (see PLATFORMS)."""
    if platform not in PLATFORMS:
        raise InputError(f"platform must be one of {list(PLATFORMS)}, got {platform!r}")
    batch = max_batch_size(spec, serving, engine_max_batch)
    key, value = _RUNTIME[platform]
    lines = [f"name: {_quote(name)}", f"{key}: {_quote(value)}", f"max_batch_size: {batch}"]
    if default_model_filename:
        lines.append(f"default_model_filename: {_quote(default_model_filename)}")
    for cc, filename in sorted((cc_model_filenames or {}).items()):
        lines.append(f"cc_model_filenames {{ key: {_quote(cc)} value: {_quote(filename)} }}")
    lines += _tensors("input", spec.inputs, batch > 0)
    lines += _tensors("output", spec.outputs, batch > 0)
    if batch > 0 and serving.dynamic_batching:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {serving.max_queue_delay_us} }}")
    gpus = f" gpus: [ {', '.join(str(g) for g in serving.gpus)} ]" if serving.gpus and serving.kind == "gpu" else ""
    lines.append(f"instance_group [ {{ count: {serving.instances} kind: {KINDS[serving.kind]}{gpus} }} ]")
    for k, v in {**parameters, **serving.extra_parameters}.items():
        lines.append(f"parameters {{ key: {_quote(k)} value: {{ string_value: {_quote(str(v))} }} }}")
    return "\n".join(lines) + "\n"
