"""What every command shares: the model options, prompt parsing, device checks, progress on stderr."""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from sam2edge.backends import registry
from sam2edge.contract.manifest import DEFAULT_STORE, STORE_ENV
from sam2edge.runtime.image.predictor import SAM2
from sam2edge.runtime.loading import MODELS_DIR_ENV

DEFAULT_MODEL = "sam2.1_hiera_tiny"
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def parse_point(text: str) -> tuple[float, float, int]:
    """'X,Y' or 'X,Y:LABEL' -> (x, y, label); label 1 (foreground) by default, 0 background."""
    try:
        xy, _, label = text.partition(":")
        x, y = (float(v) for v in xy.split(","))
        lab = int(label) if label else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"--point expects X,Y or X,Y:LABEL (e.g. 320,240:1), got {text!r}") from None
    if lab not in (0, 1):
        raise argparse.ArgumentTypeError(f"--point label must be 1 (object) or 0 (background), got {label!r}")
    return x, y, lab


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1' -> a box in pixels."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise argparse.ArgumentTypeError(f"--box expects X0,Y0,X1,Y1, got {text!r}")
    return vals  # type: ignore[return-value]


def parse_device(text: str) -> str:
    """'auto', 'cpu', 'cuda' or 'cuda:N'."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"--device must be auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", "--engines", dest="store", metavar="DIR", default=None,
                   help=f"the artifact store (default ${STORE_ENV} or {DEFAULT_STORE}/)")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --backend, --device, --strict, --store: the same everywhere a model is loaded."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"variant name (official checkpoint from ${MODELS_DIR_ENV}, the cache, or downloaded once), "
                        f"a checkpoint .pt, or an export folder (default {DEFAULT_MODEL})")
    g.add_argument("--backend", default=registry.AUTO, choices=registry.CHOICES,
                   help="auto picks the fastest that fits and falls back with a logged reason; a named backend "
                        "is used as asked (add --fallback to allow others if it fails)")
    g.add_argument("--fallback", action="store_true", help="with a named --backend: fall back to others if it fails")
    g.add_argument("--device", type=parse_device, default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_store_option(g)


def load_model(args: argparse.Namespace, video: bool = False) -> Any:
    """The predictor the model options describe; a named backend is strict unless --fallback."""
    strict = args.backend != registry.AUTO and not getattr(args, "fallback", False)
    return SAM2.from_pretrained(args.model, backend=args.backend, device=args.device, strict=strict,
                                     store_dir=args.store, video=video)


class Progress:
    """A one-line progress bar on stderr (items done / total, items per second)."""

    def __init__(self, total: int | None, label: str, unit: str = "frames") -> None:
        self.total, self.label, self.unit, self.done = total, label, unit, 0
        self.start = time.perf_counter()
        self.enabled = sys.stderr.isatty() or total is not None

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        if self.total:
            filled = int(30 * min(self.done / self.total, 1.0))
            bar = "#" * filled + "-" * (30 - filled)
            text = f"\r{self.label} [{bar}] {self.done}/{self.total} {self.unit}, {rate:.1f}/s"
        else:
            text = f"\r{self.label}: {self.done} {self.unit}, {rate:.1f}/s"
        sys.stderr.write(text)
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")
            sys.stderr.flush()
