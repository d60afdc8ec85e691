"""Class: the README tells a new user how to install and run offline (what the offline probe lacked)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"the README has no '## {title}' section"
    return match.group(1)


def test_install_section_covers_cpu_only_machines_and_the_extras():
    text = _section("Install")
    assert "download.pytorch.org/whl/cpu" in text, "how to get the CPU wheel of torch (not gigabytes of CUDA)"
    assert '".[onnx]"' in text and '".[onnx-gpu]"' in text and "onnxruntime-gpu" in text
    assert re.search(r"\d+ min", text), "how long the test suite takes"


def test_offline_section_names_every_knob():
    text = _section("Offline / air-gapped")
    for needle in ("SAM2EDGE_MODELS_DIR", "SAM2EDGE_MIRROR", "sam2edge models", "sam2edge export", "sam2edge build"):
        assert needle in text, needle


def test_onnx_gpu_extra_exists():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("onnxruntime-gpu") for dep in extras["onnx-gpu"])
