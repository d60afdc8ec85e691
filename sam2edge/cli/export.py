"""``sam2edge export CHECKPOINT|NAME [--store DIR] [--artifacts ...]``

Exports the four networks to ONNX, verifies each against PyTorch, and writes them with a manifest
to ``<store>/<variant>-<sha8>/onnx/`` (printed on stdout; progress on stderr). Needs ``.[export]``.
"""

from __future__ import annotations

import argparse
import sys
import time

from sam2edge.backends import lazy
from sam2edge.cli.common import add_store_option
from sam2edge.contract.artifacts import Artifact
from sam2edge.export.onnx_export import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS, LEGACY_OPSET, ExportSettings, export_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("checkpoint", metavar="CHECKPOINT|NAME",
                        help="an official-format .pt checkpoint, or a variant name (downloaded if needed)")
    add_store_option(parser)
    parser.add_argument("--out", dest="store", metavar="DIR", help=argparse.SUPPRESS)  # the former name of --store
    parser.add_argument("--artifacts", nargs="+", choices=list(Artifact.ALL), default=None,
                        help="export only these (default: all four)")
    parser.add_argument("--exporter", choices=EXPORTERS, default=DEFAULT_EXPORTER,
                        help=f"torch.onnx exporter (default {DEFAULT_EXPORTER})")
    parser.add_argument("--opset", type=int, default=None,
                        help=f"ONNX opset (default {DEFAULT_OPSET} for dynamo, {LEGACY_OPSET} for legacy)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for export-time verification")
    parser.add_argument("--allow-trt-incompatible", action="store_true",
                        help="record TensorRT-parser problems in the manifest instead of failing")
    return parser


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    if args.threads:
        lazy.import_torch("sam2edge export").set_num_threads(int(args.threads))
    settings = ExportSettings(exporter=args.exporter, opset=args.opset, threads=args.threads,
                              check_trt=not args.allow_trt_incompatible)
    out = export_checkpoint(args.checkpoint, root=args.store, artifacts=args.artifacts, settings=settings,
                            progress=progress)
    print(out)
    return 0
