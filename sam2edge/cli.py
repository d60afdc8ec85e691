"""Command line: segment, track, export, build, doctor, download.

Each subcommand's arguments and implementation live beside the code they drive; this file
only wires them together and keeps start-up light (heavy imports happen per command).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable

from sam2edge.errors import Sam2EdgeError

# command -> (module, add-arguments function, run function, help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "segment": ("sam2edge.cli_segment", "add_segment_arguments", "run_segment", "segment an image from points/boxes"),
    "track": ("sam2edge.cli_track", "add_track_arguments", "run_track", "track objects through a video"),
    "export": ("sam2edge.export.cli", "add_export_arguments", "run_export", "export verified ONNX artifacts"),
    "build": ("sam2edge.engines.cli", "add_build_arguments", "run_build", "build TensorRT engines for this device"),
    "doctor": ("sam2edge.engines.cli", "add_doctor_arguments", "run_doctor", "report GPUs, libraries, engines, backend"),
    "download": ("sam2edge.cli_segment", "add_download_arguments", "run_download", "download an official checkpoint"),
    "serve": ("sam2edge.server.command", "add_serve_arguments", "run_serve", "serve the model over HTTP (Roboflow API, video, page)"),
}


def _load(module: str, attr: str) -> Callable | None:
    """The command's function, or None when its module is not part of this install.

    Only a missing module hides a command; any other import error surfaces.
    """
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return None
        raise
    return getattr(mod, attr, None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam2edge", description="SAM2 segmentation for edge and on-prem deployment")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level (backend choices, timings)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, add, run, help_text) in COMMANDS.items():
        add_fn, run_fn = _load(module, add), _load(module, run)
        if add_fn is None or run_fn is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_fn(p)
        p.set_defaults(_run=run_fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except Sam2EdgeError as exc:
        print(f"sam2edge {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
