"""A torchvision stand-in for the EdgeTAM oracle environment (its own venv; see scripts/edgetam_oracle_env.sh).

There is no CPU build of torchvision on the package index CI uses. The official EdgeTAM code
needs it twice, neither time for a computation that matters here:

* timm (which builds the official RepViT trunk) imports ``torchvision.ops.misc.FrozenBatchNorm2d``,
  ``torchvision.transforms`` (+ ``functional.InterpolationMode``) and a few ``torchvision.datasets``
  names at import time; RepViT uses none of them.
* ``SAM2ImagePredictor`` uses ``ToTensor``, ``Resize`` and ``Normalize``: these come from
  tests/torchvision_shim.py (their documented tensor semantics, as for the SAM2 oracle).

Every other name resolves to a placeholder class that raises when instantiated, so anything
that would really need torchvision fails loudly instead of computing something else.
``torchvision.models.feature_extraction`` is left out (timm then disables its FX path).
"""

from __future__ import annotations

import enum
import sys
import types


def _placeholder(qualname: str) -> type:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError(f"{qualname} is not provided by tests/edgetam/torchvision_standin.py")

    return type(qualname.rsplit(".", 1)[-1], (), {"__init__": refuse, "__module__": qualname.rsplit(".", 1)[0]})


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _module(name: str, **attrs: object) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    module.__path__ = []  # a package, so its submodules can be imported

    def __getattr__(attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _placeholder(f"{name}.{attr}")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def install() -> str:
    """Make the imports above work; returns which torchvision is in use."""
    try:
        import torchvision.transforms  # noqa: F401

        return "torchvision"
    except Exception:
        pass
    from tests.torchvision_shim import Normalize, Resize, ToTensor

    functional = _module("torchvision.transforms.functional", InterpolationMode=InterpolationMode)
    transforms = _module("torchvision.transforms", ToTensor=ToTensor, Resize=Resize, Normalize=Normalize,
                         InterpolationMode=InterpolationMode, functional=functional)
    misc = _module("torchvision.ops.misc")
    ops = _module("torchvision.ops", misc=misc)
    datasets = _module("torchvision.datasets")
    root = _module("torchvision", transforms=transforms, ops=ops, datasets=datasets, __version__="0.0+standin")
    for module in (root, transforms, functional, ops, misc, datasets):
        sys.modules[module.__name__] = module
    return "tests/edgetam/torchvision_standin.py (ToTensor/Resize/Normalize from tests/torchvision_shim.py; the rest refuses)"
