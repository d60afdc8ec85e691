"""``sam2edge``: the command line. The only layer that prints; one error path for every command.

Exit codes: 0 success; 1 a sam2edge error (bad input, a missing or damaged file, no usable
backend; one line on stderr); 2 a usage error (argparse); 3 an unexpected error (one line, and
the traceback with ``-v``); 130 interrupted. ``-v``/``--verbose`` is accepted anywhere.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from sam2edge import __version__
from sam2edge.errors import Sam2EdgeError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# command -> (module with add_arguments(parser) and run(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "segment": ("sam2edge.cli.segment", "segment an image from points/boxes"),
    "everything": ("sam2edge.cli.everything", "segment everything in an image (automatic mask generation)"),
    "track": ("sam2edge.cli.track", "track objects through a video"),
    "export": ("sam2edge.cli.export", "export verified ONNX artifacts from a checkpoint"),
    "build": ("sam2edge.cli.build", "build TensorRT engines for this device"),
    "doctor": ("sam2edge.cli.doctor", "report GPUs, libraries, the store and what auto would pick"),
    "download": ("sam2edge.cli.download", "download an official checkpoint"),
    "serve": ("sam2edge.cli.serve", "serve the model over HTTP (Roboflow API, video sessions, camera, page)"),
    "models": ("sam2edge.cli.models", "list the variants, local checkpoints, exports, engines and what auto would pick"),
    "triton-repo": ("sam2edge.cli.triton_repo", "write a Triton Inference Server model repository from an export set"),
    "label": ("sam2edge.cli.label", "label images (prompts or automatic masks) and videos in batch on Ray"),
}

ENVIRONMENT = (
    "environment (offline / air-gapped: see the README):\n"
    "  SAM2EDGE_MODELS_DIR  checkpoints copied by hand, as <dir>/<variant>.pt (e.g. sam2.1_hiera_tiny.pt); used\n"
    "                       first by every command, before the download cache and any download\n"
    "  SAM2EDGE_MIRROR      base URL to download <variant>.pt from instead of the official host\n"
    "  SAM2EDGE_CACHE       the download cache (default ~/.cache/sam2edge)\n"
    "  SAM2EDGE_STORE       the artifact store of exports and engines (default engines/)"
)


def _verbose_parent() -> argparse.ArgumentParser:
    # SUPPRESS: a sub-command's -v must not reset one given before the sub-command.
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log at INFO level (backend choices, timings) and show tracebacks")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam2edge", parents=[_verbose_parent()],
                                     description="SAM2 segmentation for edge and on-prem deployment",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="exit codes: 0 ok, 1 error, 2 usage, 3 unexpected error, 130 interrupted\n\n" + ENVIRONMENT)
    parser.add_argument("--version", action="version", version=f"sam2edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_text, description=(mod.__doc__ or help_text).replace("``", ""), parents=[_verbose_parent()],
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=ENVIRONMENT)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args._run(args) or 0)
    except Sam2EdgeError as exc:
        _say(args.command, f"error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say(args.command, "interrupted")
        return EXIT_INTERRUPTED
    except ImportError as exc:
        _say(args.command, f"error: a package this command needs is missing: {exc} (see the README's install section)")
        return EXIT_ERROR
    except Exception as exc:  # a bug: one line, the traceback on request
        if verbose:
            traceback.print_exc()
        _say(args.command, f"unexpected error: {type(exc).__name__}: {exc}" + ("" if verbose else " (run with -v for the traceback)"))
        return EXIT_INTERNAL


def _say(command: str, message: str) -> None:
    print(f"sam2edge {command}: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
