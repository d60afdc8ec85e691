"""Command line: the only layer that prints. ``sam2edge.cli.main`` is the entry point."""

from sam2edge.cli.main import main

__all__ = ["main"]
