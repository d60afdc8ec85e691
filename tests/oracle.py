"""The official ``sam2`` package as the oracle: builders and shared test data.

Skips (with a reason) where the official package is not installed; CI installs it from
requirements/oracle.txt, so there every oracle test runs.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

from sam2edge.config import get_config

torch = pytest.importorskip("torch")


def official_config_file(name: str) -> str:
    """The official hydra config path for a variant name or alias."""
    cfg = get_config(name)
    short = {"tiny": "t", "small": "s", "base_plus": "b+", "large": "l"}[cfg.size]
    folder = "sam2.1" if cfg.version == "sam2.1" else "sam2"
    return f"configs/{folder}/{cfg.version}_hiera_{short}.yaml"


def have_oracle() -> bool:
    try:
        import sam2.build_sam  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return False
    return True


requires_oracle = pytest.mark.skipif(
    not have_oracle(), reason="official sam2==1.1.0 not installed (pip install per requirements/oracle.txt)"
)


@functools.lru_cache(maxsize=2)
def official_model(name: str, seed: int = 0):
    """The official SAM2Base for ``name`` on CPU, eval mode, every tensor randomised.

    Built with ``build_sam2(apply_postprocessing=True)`` (the default), i.e. with the
    stability-based multimask fallback on, as users get it.
    """
    from sam2.build_sam import build_sam2

    from sam2edge.model.testing import randomize_parameters

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_sam2(official_config_file(name), ckpt_path=None, device="cpu", mode="eval")
    randomize_parameters(model, seed)
    return model.eval()


def official_state_dict(name: str, seed: int = 0) -> dict:
    return {k: v.clone() for k, v in official_model(name, seed).state_dict().items()}


@functools.lru_cache(maxsize=1)
def test_images() -> dict[str, np.ndarray]:
    """Real photographs (RGB uint8) from scikit-image, plus a noise image."""
    from skimage import data

    rng = np.random.default_rng(0)
    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "noise": rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8),
    }


def preprocess_exact(image: np.ndarray, size: int = 1024):
    """Official image-predictor preprocessing in plain torch: /255, bilinear antialiased
    stretch to size x size, ImageNet normalisation -> (1, 3, size, size) float32."""
    from torch.nn import functional as F

    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


test_images.__test__ = False  # a data helper, not a test, wherever it is imported


def max_abs(a, b) -> float:
    return float((a.float() - b.float()).abs().max())
