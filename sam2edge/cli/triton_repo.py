"""``sam2edge triton-repo EXPORT --out model_repository/ [--platform onnxruntime|tensorrt|python]``

Writes a Triton Inference Server model repository from an export set in the store: one model per
artifact (``<prefix>_<artifact>``), ``config.pbtxt`` derived from the artifact specs, model files in
version folder 1, every file checked against the sha256 its manifest recorded.

    sam2edge triton-repo sam2.1_hiera_tiny --out model_repository --platform onnxruntime
    sam2edge triton-repo sam2.1_hiera_tiny --out model_repository --platform tensorrt --precision fp16
    sam2edge triton-repo engines/sam2.1_hiera_tiny-5bbb9fd9 --out repo --platform python --instances 2

Only the image encoder is batched by Triton (its batch axis is a true one); the prompt decoder's
prompts share one image's features, so clicks from many users share it through instances, not batches.
A repository folder that cannot be written is refused before anything is read (one line naming
--out, exit 1); a write that fails later removes that model's half-written folder and says which.
Then: ``tritonserver --model-repository model_repository`` and
``AutoModel.from_pretrained("triton://HOST:8001/<prefix>")``.
"""

from __future__ import annotations

import argparse
import json
import sys

from sam2edge.cli.common import add_store_option, non_negative_int, positive_int
from sam2edge.cli.outputs import check_folder_target
from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.contract.serving import DEFAULT_GRPC_PORT, SCHEME
from sam2edge.scale.triton_config import KINDS, PLATFORMS, Serving
from sam2edge.scale.triton_repo import write_repository


def _gpus(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(g) for g in text.split(",") if g.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus expects device ids like 0,1, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("export", help="export set: a store folder (<variant>-<sha8>, or its onnx/), or a variant name")
    p.add_argument("--out", required=True, help="the model repository folder to write")
    p.add_argument("--platform", choices=PLATFORMS, default="onnxruntime",
                   help="Triton backend that runs the models (default onnxruntime; python wraps sam2edge's runner)")
    p.add_argument("--prefix", default=None, help="model-name prefix (default: the variant, e.g. sam2_1_hiera_tiny)")
    p.add_argument("--artifacts", nargs="+", choices=list(ARTIFACTS), default=None, help="default: all exported")
    p.add_argument("--instances", type=positive_int, default=1, help="model instances per device (default 1)")
    p.add_argument("--kind", choices=list(KINDS), default=None, help="instance kind (default gpu; cpu for --platform python)")
    p.add_argument("--gpus", type=_gpus, default=(), help="GPU ids for the instances, e.g. 0,1 (default all)")
    p.add_argument("--no-dynamic-batching", dest="dynamic_batching", action="store_false",
                   help="do not let Triton batch the image encoder's requests")
    p.add_argument("--max-queue-delay-us", type=non_negative_int, default=0, help="how long a request may wait for a batch (default 0)")
    p.add_argument("--max-batch-size", type=positive_int, default=None, help="cap on the image encoder's batch (default: the spec's)")
    p.add_argument("--precision", default="fp16", help="TensorRT engine precision to serve (--platform tensorrt)")
    p.add_argument("--engine-set", dest="engine_sets", action="append", default=[], metavar="DIR",
                   help="TensorRT engine set folder to serve (repeatable; default: every set of --precision)")
    p.add_argument("--threads", type=positive_int, default=None, help="ONNX Runtime threads per instance (--platform python)")
    p.add_argument("--overwrite", action="store_true", help="replace model folders that exist")
    p.add_argument("--json", action="store_true", help="print what was written as JSON on stdout")
    add_store_option(p)


def run(args: argparse.Namespace) -> int:
    check_folder_target(args.out, "--out")  # before any file is read; the writer checks each write again
    kind = args.kind or ("cpu" if args.platform == "python" else "gpu")
    serving = Serving(instances=args.instances, kind=kind, gpus=args.gpus, dynamic_batching=args.dynamic_batching,
                      max_queue_delay_us=args.max_queue_delay_us, max_batch_size=args.max_batch_size)
    written = write_repository(args.export, args.out, args.platform, serving, prefix=args.prefix, store_root=args.store,
                               artifacts=args.artifacts, precision=args.precision, engines=args.engine_sets,
                               threads=args.threads, overwrite=args.overwrite,
                               progress=lambda line: print(line, file=sys.stderr))
    prefix = written[0].name[: -len(written[0].artifact)].rstrip("_") if written else ""
    if args.json:
        print(json.dumps({"out": args.out, "platform": args.platform, "prefix": prefix,
                          "models": [w.__dict__ for w in written]}))
    else:
        print(f"wrote {len(written)} models to {args.out}; serve with `tritonserver --model-repository {args.out}` and "
              f"load {SCHEME}HOST:{DEFAULT_GRPC_PORT}/{prefix}", file=sys.stderr)
    return 0
