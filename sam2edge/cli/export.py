"""``sam2edge export CHECKPOINT|NAME --out engines/ [--artifacts ...]`` (wired into sam2edge.cli)."""

from __future__ import annotations

import argparse
import sys
import time

from sam2edge.backends import lazy
from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.contract.manifest import DEFAULT_ROOT, ENGINES_ENV
from sam2edge.errors import Sam2EdgeError
from sam2edge.export.onnx_export import DEFAULT_EXPORTER, DEFAULT_OPSET, EXPORTERS, LEGACY_OPSET, ExportSettings, export_checkpoint


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of the ``export`` sub-command."""

    parser.add_argument("checkpoint", metavar="CHECKPOINT|NAME",
                        help="an official-format .pt checkpoint, or a variant name (downloaded if needed)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help=f"engine store root (default ${ENGINES_ENV} or {DEFAULT_ROOT}/); artifacts go to "
                             "DIR/<variant>-<sha8>/onnx/")
    parser.add_argument("--artifacts", nargs="+", choices=list(ARTIFACTS), default=None,
                        help="export only these (default: all four)")
    parser.add_argument("--exporter", choices=EXPORTERS, default=DEFAULT_EXPORTER,
                        help=f"torch.onnx exporter (default {DEFAULT_EXPORTER})")
    parser.add_argument("--opset", type=int, default=None,
                        help=f"ONNX opset (default {DEFAULT_OPSET} for dynamo, {LEGACY_OPSET} for legacy)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for export-time verification")
    parser.add_argument("--allow-trt-incompatible", action="store_true",
                        help="record TensorRT-parser problems in the manifest instead of failing")
    return parser


def run_export(args: argparse.Namespace) -> int:
    """Run the export; 0 on success, 1 on a sam2edge error (message on stderr)."""

    start = time.perf_counter()

    def progress(msg: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {msg}", file=sys.stderr, flush=True)

    if args.threads:
        if lazy.available("torch"):  # torch is required below anyway; its absence is reported there
            lazy.import_torch().set_num_threads(int(args.threads))
    settings = ExportSettings(exporter=args.exporter, opset=args.opset, threads=args.threads,
                              check_trt=not args.allow_trt_incompatible)
    try:
        out = export_checkpoint(args.checkpoint, root=args.out, artifacts=args.artifacts, settings=settings,
                                progress=progress)
    except ImportError as exc:
        print(f"sam2edge export: needs the export extra (pip install 'sam2edge[export]'): {exc}", file=sys.stderr)
        return 1
    except Sam2EdgeError as exc:
        print(f"sam2edge export: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m sam2edge.cli.export``)."""
    parser = add_export_arguments(argparse.ArgumentParser(prog="sam2edge export", description=__doc__))
    return run_export(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
