"""What every command shares: the model options, prompt parsing (one group per object), device checks,
progress on stderr."""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from typing import Any

from sam2edge.backends import registry
from sam2edge.contract.manifest import DEFAULT_STORE, STORE_ENV
from sam2edge.download import MODELS_DIR_ENV
from sam2edge.errors import InputError
from sam2edge.runtime.image.predictor import SAM2

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


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--max-frames``, ``--frame``)."""
    return _int_at_least(text, 0)


def positive_int(text: str) -> int:
    """An integer >= 1 (``--actors``, ``--threads``, ``--instances``)."""
    return _int_at_least(text, 1)


# -- objects: --obj ID opens a group; the --point/--box (and --frame) after it belong to it ------
OBJECTS_HELP = (
    "several objects: each --obj ID starts the prompts of one object; the --point/--box{frame}\n"
    "options after it belong to that object (one --box per object). Without --obj, every prompt\n"
    "belongs to object 1."
)


@dataclass(frozen=True)
class ObjectPrompt:
    """The prompts of one object: clicks (x, y, label), at most one box, and (track) their frame."""

    obj: int
    points: tuple[tuple[float, float, int], ...]
    box: tuple[float, float, float, float] | None
    frame: int = 0


class _Group(argparse.Action):
    """--obj opens a new group; --point, --box and --frame add to the group opened last."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any,
                 option_string: str | None = None) -> None:
        groups = list(getattr(namespace, "objects", None) or [])
        if option_string == "--obj":
            groups.append({"obj": value, "points": [], "boxes": [], "frame": None})
        else:
            if not groups:
                groups.append({"obj": None, "points": [], "boxes": [], "frame": None})
            key = {"--point": "points", "--box": "boxes"}.get(option_string or "")
            if key:
                groups[-1][key].append(value)
            else:
                groups[-1]["frame"] = value
        namespace.objects = groups


def add_object_options(p: argparse.ArgumentParser, frame: bool = False) -> None:
    """--obj ID, --point X,Y[:LABEL], --box X0,Y0,X1,Y1 (and --frame N): repeatable, grouped per object."""
    g = p.add_argument_group("prompts", OBJECTS_HELP.format(frame=", --frame" if frame else ""))
    g.add_argument("--obj", action=_Group, dest="objects", type=int, metavar="ID",
                   help="start the prompts of object ID (repeat for several objects)")
    g.add_argument("--point", action=_Group, dest="objects", type=parse_point, metavar="X,Y[:LABEL]",
                   help="a click in pixels; label 1 on the object (default), 0 background; repeatable")
    g.add_argument("--box", action=_Group, dest="objects", type=parse_box, metavar="X0,Y0,X1,Y1",
                   help="a box around the object, in pixels (one per object)")
    if frame:
        g.add_argument("--frame", action=_Group, dest="objects", type=non_negative_int, metavar="N",
                       help="the frame this object's prompts are on (default 0; before any --obj: every object's default)")


def object_prompts(args: argparse.Namespace) -> list[ObjectPrompt]:
    """The objects the prompt options describe, checked (see OBJECTS_HELP)."""
    groups = list(getattr(args, "objects", None) or [])
    implicit = groups.pop(0) if groups and groups[0]["obj"] is None else None
    default_frame = (implicit or {}).get("frame") or 0
    for g in groups:
        if not g["points"] and not g["boxes"]:
            raise InputError(f"--obj {g['obj']} has no --point or --box after it: an object's prompts follow its --obj "
                             f"(e.g. --obj {g['obj']} --box X0,Y0,X1,Y1)")
    if implicit and (implicit["points"] or implicit["boxes"]):
        if groups:
            raise InputError("the --point/--box before the first --obj belong to no object: with several objects, put "
                             "each object's prompts after its --obj ID")
        groups = [{**implicit, "obj": 1}]
    if not groups:
        raise InputError("give at least one --point X,Y[:LABEL] or a --box X0,Y0,X1,Y1 (several objects: --obj ID before each)")
    seen: set[int] = set()
    out = []
    for g in groups:
        if g["obj"] in seen:
            raise InputError(f"--obj {g['obj']} is given twice; give all of an object's prompts after one --obj")
        seen.add(g["obj"])
        if len(g["boxes"]) > 1:
            raise InputError(f"object {g['obj']} has {len(g['boxes'])} boxes; give one --box per object "
                             "(start another object with --obj ID)")
        frame = g["frame"] if g["frame"] is not None else default_frame
        out.append(ObjectPrompt(g["obj"], tuple(g["points"]), g["boxes"][0] if g["boxes"] else None, frame))
    return out


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
                   help=f"variant name (its checkpoint is taken from ${MODELS_DIR_ENV}/<name>.pt, else the download cache, "
                        f"else downloaded once), a checkpoint .pt, or an export folder (default {DEFAULT_MODEL})")
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
