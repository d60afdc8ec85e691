"""Command line: the only layer that prints. ``sam2edge.cli.main`` is the entry point."""

from sam2edge.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
