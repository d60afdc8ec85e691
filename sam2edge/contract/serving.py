"""What a Triton model repository made by sam2edge promises its clients, written once.

The repository writer (:mod:`sam2edge.scale.triton_repo`) and the Triton runner
(:mod:`sam2edge.backends.triton_runner`) both read these: how a model is named from a prefix
and an artifact, which ``parameters`` each ``config.pbtxt`` carries (the variant, the
checkpoint, the artifact's file hash, a digest of its spec), how numpy dtypes are spelled on
the wire, and which artifacts have a true batch axis that Triton may batch across requests.

No heavy imports: numpy is not even needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from sam2edge.contract.artifacts import ARTIFACTS, BATCH, Artifact
from sam2edge.contract.manifest import spec_to_dict
from sam2edge.contract.spec import ArtifactSpec, Dim
from sam2edge.errors import InputError

SCHEME = "triton://"
DEFAULT_GRPC_PORT = 8001

# config.pbtxt parameters (string values) every model of a sam2edge repository carries.
PARAM_VARIANT = "sam2edge_variant"
PARAM_CHECKPOINT = "sam2edge_checkpoint_sha256"
PARAM_ARTIFACT = "sam2edge_artifact"
PARAM_FILE = "sam2edge_file"  # the model file in the version folder
PARAM_FILE_SHA256 = "sam2edge_file_sha256"  # what the export (or build) manifest recorded for it
PARAM_FILE_SIZE = "sam2edge_file_size"
PARAM_SPEC = "sam2edge_spec_sha256"  # digest of the artifact's interface (spec_to_dict)
PARAM_HOST_CONSTANTS = "sam2edge_host_constants"  # JSON: the export's host constants (video mask prompts)
PARAM_THREADS = "sam2edge_threads"  # Python platform: ONNX Runtime intra-op threads per instance

# numpy dtype name -> Triton's wire datatype and its config enum.
WIRE_DTYPES = {"float32": "FP32", "float16": "FP16", "int32": "INT32", "int64": "INT64", "bool": "BOOL"}
CONFIG_DTYPES = {name: f"TYPE_{wire}" for name, wire in WIRE_DTYPES.items()}

# Where a request's leading axis is a true batch axis, Triton may concatenate requests on it.
# Only the image encoder has one: every input and output is per image. The others are not
# batchable across requests: the prompt decoder's prompts all share ONE image's high-res features
# (a static axis of 1) and, for still images, one embedding, and point counts differ per click
# (padding points are real tokens to the decoder, so padding would change results); the memory
# networks share one frame's features across objects in the same way.
BATCH_DIMS: dict[str, Dim] = {Artifact.IMAGE_ENCODER: BATCH}

_PREFIX = re.compile(r"^[A-Za-z0-9_.-]*$")


def model_name(prefix: str, artifact: str) -> str:
    """The Triton model serving ``artifact``: ``<prefix>_<artifact>`` (``artifact`` for an empty prefix)."""
    return f"{prefix}_{artifact}" if prefix else artifact


def default_prefix(variant: str) -> str:
    """A model-name prefix from a variant: ``sam2.1_hiera_tiny`` -> ``sam2_1_hiera_tiny``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", variant)


def check_prefix(prefix: str, name: str = "prefix") -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise InputError(f"{name} must be letters, digits, '_', '.' or '-', got {prefix!r}")
    return prefix


def spec_digest(spec: ArtifactSpec) -> str:
    """sha256 of an artifact's interface (names, dtypes, dims, ranges, docs): equal on both ends or refused."""
    return hashlib.sha256(json.dumps(spec_to_dict(spec), sort_keys=True).encode()).hexdigest()


def batch_dim(artifact: str) -> Dim | None:
    """The true batch axis (axis 0 of every input and output) of an artifact, or None."""
    dim = BATCH_DIMS.get(artifact)
    if dim is None:
        return None
    spec = ARTIFACTS[artifact]
    assert all(t.shape[0] is dim for t in (*spec.inputs, *spec.outputs)), f"{artifact}: {dim.name} is not axis 0 everywhere"
    return dim


@dataclass(frozen=True)
class TritonAddress:
    """``triton://host[:port]/<prefix>``: a Triton server's gRPC endpoint and the prefix of sam2edge's models."""

    host: str
    port: int
    prefix: str

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def model(self, artifact: str) -> str:
        return model_name(self.prefix, artifact)

    def __str__(self) -> str:
        return f"{SCHEME}{self.endpoint}/{self.prefix}"


def is_triton_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(SCHEME)


def parse_triton_url(url: str) -> TritonAddress:
    """``triton://host:8001/sam2_1_hiera_tiny`` -> TritonAddress; InputError naming what is wrong."""
    if not is_triton_url(url):
        raise InputError(f"a Triton model is addressed as {SCHEME}host[:port]/<model prefix>, got {url!r}")
    rest = url[len(SCHEME):]
    hostport, _, prefix = rest.partition("/")
    if hostport.startswith("["):  # [::1]:8001
        host, _, port_text = hostport[1:].partition("]")
        port_text = port_text.removeprefix(":")
    elif hostport.count(":") == 1:
        host, _, port_text = hostport.partition(":")
    else:
        host, port_text = hostport, ""
    if not host:
        raise InputError(f"{url!r} names no host; expected {SCHEME}host[:port]/<model prefix>")
    try:
        port = int(port_text) if port_text else DEFAULT_GRPC_PORT
    except ValueError:
        raise InputError(f"{url!r}: the port must be a number, got {port_text!r}") from None
    if not 0 < port < 65536:
        raise InputError(f"{url!r}: the port must be 1..65535, got {port}")
    return TritonAddress(host, port, check_prefix(prefix.strip("/"), f"the model prefix of {url!r}"))
