"""``sam2edge build MODEL [--precision fp16|bf16|fp32] [--max-* N]``

Builds one TensorRT engine per artifact for this GPU into the store, verifies them against ONNX
Runtime on real images, and writes the manifest. A checkpoint or cached official checkpoint not yet
exported is exported first. ``--print-trtexec`` prints the equivalent trtexec commands instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sam2edge.backends import lazy
from sam2edge.cli.common import add_store_option
from sam2edge.contract.manifest import engine_dir
from sam2edge.download import resolve_checkpoint
from sam2edge.engines import tensorrt as trtb
from sam2edge.engines.build import build_engines
from sam2edge.engines.store import PRECISIONS, ArtifactStore, OnnxSet
from sam2edge.errors import BackendUnavailableError, CheckpointError, EngineMismatchError
from sam2edge.export.onnx_export import export_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="exported ONNX folder, or a variant name / <variant>-<sha8> in the store")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--workspace", type=int, default=trtb.DEFAULT_WORKSPACE >> 20, metavar="MiB",
                        help="TensorRT builder workspace limit in MiB (default %(default)s)")
    parser.add_argument("--max-batch", type=int, help="largest image batch / number of video objects")
    parser.add_argument("--max-prompts", type=int, help="largest number of prompts per decoder call")
    parser.add_argument("--max-points", type=int, help="largest number of points per prompt")
    parser.add_argument("--max-memory-frames", type=int, help="largest number of memory frames in memory attention")
    parser.add_argument("--artifacts", nargs="+", help="build only these artifacts")
    add_store_option(parser)
    parser.add_argument("--no-verify", action="store_true", help="skip the verification against ONNX Runtime")
    parser.add_argument("--print-trtexec", action="store_true",
                        help="print the equivalent trtexec commands instead of building (no TensorRT Python needed)")
    parser.add_argument("--trt-major", type=int, choices=(10, 11),
                        help="TensorRT major version of trtexec (default: the installed TensorRT's, else 10)")


def _limits(args: argparse.Namespace) -> dict[str, int]:
    return trtb.limits_from_options(max_batch=args.max_batch, max_prompts=args.max_prompts, max_points=args.max_points,
                                    max_memory_frames=args.max_memory_frames)


def _build_args(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("workspace", "max_batch", "max_prompts", "max_points", "max_memory_frames", "artifacts", "store")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def run(args: argparse.Namespace) -> int:
    store = ArtifactStore(args.store)
    onnx = find_or_export(store, args.model)
    names = trtb.artifact_order(list(args.artifacts or onnx.specs))
    if args.print_trtexec:
        print_trtexec(onnx, names, args.precision, _limits(args), args.workspace << 20, args.trt_major or installed_trt_major())
        return 0
    engines = build_engines(onnx, store=store, precision=args.precision, workspace=args.workspace << 20,
                            limits=_limits(args), artifacts=names, verify=not args.no_verify,
                            build_args=_build_args(args))
    print(f"engines written to {engines.dir}")
    return 0


def installed_trt_major() -> int:
    """The major version of the importable TensorRT; 10 (with a note) when there is none."""
    if lazy.available("tensorrt"):
        try:
            return lazy.tensorrt_major(lazy.import_tensorrt("reading the TensorRT version"))
        except BackendUnavailableError as exc:
            print(f"# {exc}", file=sys.stderr)
    print("# the TensorRT Python bindings are not installed here: trtexec lines for TensorRT 10 "
          "(pass --trt-major 11 for trtexec 11)", file=sys.stderr)
    return 10


def find_or_export(store: ArtifactStore, model: str) -> OnnxSet:
    """The store's export of ``model``; a checkpoint file (or a cached official checkpoint) is exported first."""

    try:
        return store.find_onnx(model)
    except EngineMismatchError:
        if not Path(model).is_file():
            try:
                resolve_checkpoint(model, download=False)
            except CheckpointError:
                raise EngineMismatchError(
                    f"no export of {model!r} under {store.root} and no local checkpoint: "
                    f"run `sam2edge export {model} --out {store.root}` first (it downloads official checkpoints)"
                ) from None

    print(f"{model}: not exported yet, exporting to {store.root} first", file=sys.stderr)
    return store.find_onnx(str(export_checkpoint(model, root=store.root, progress=lambda m: print(m, file=sys.stderr))))


def print_trtexec(onnx: OnnxSet, names: list[str], precision: str, limits: dict[str, int], workspace: int,
                  trt_major: int) -> None:
    out_dir = engine_dir(onnx.model_dir, precision, "trtexec")
    print(f"# {onnx.variant}: {precision} engines with trtexec (TensorRT {trt_major}.x) into {out_dir}")
    print("# engines built this way carry no sam2edge manifest: use them with trtexec/Triton/DeepStream,")
    print("# or build with `sam2edge build` where the TensorRT Python bindings exist.")
    print(f"mkdir -p {out_dir}")
    for name in names:
        src = onnx.artifact_path(name)
        policy = None
        if precision != "fp32":
            try:
                policy = trtb.load_policy(src, name, precision)
            except ImportError:
                print(f"# onnx is not installed: no --layerPrecisions for {name} (pip install onnx)")
        if trt_major >= 11 and precision != "fp32":
            mixed = out_dir / f"{name}.{precision}.onnx"  # beside the engines: the ONNX store stays as exported
            print(f"# TensorRT 11 is strongly typed: first convert {src} to mixed precision with ModelOpt AutoCast "
                  f"into {mixed} (keep_io_types, data_max=inf, the fp32 nodes of the policy excluded)")
            src = mixed
        print(trtb.trtexec_command(src, out_dir / f"{name}.engine", onnx.specs[name], precision, limits, workspace,
                                   policy, out_dir / "timing.cache", trt_major))
