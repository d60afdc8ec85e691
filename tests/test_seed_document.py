"""The seed document's examples run as written after the import change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.oracle import test_images

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")


@pytest.mark.slow
def test_seed_document_script_runs(tmp_path):
    from sam2edge.config import get_config
    from sam2edge.model.checkpoint import write_random_checkpoint

    models = tmp_path / "models"
    # The seed's id "sam2/hiera_b_plus" means the SAM2.1 base+ checkpoint; a random-weight one stands in,
    # placed in the local models folder (no network here).
    write_random_checkpoint(models / f"{get_config('sam2/hiera_b_plus').name}.pt", "sam2/hiera_b_plus", seed=3)
    work = tmp_path / "work"
    (work / "path" / "to").mkdir(parents=True)
    imgs = test_images()
    cv2.imwrite(str(work / "path/to/image.jpg"), imgs["astronaut"][:, :, ::-1])
    cv2.imwrite(str(work / "image.jpg"), imgs["coffee"][:, :, ::-1])
    for i, name in enumerate(["astronaut", "coffee", "chelsea", "noise"]):
        cv2.imwrite(str(work / f"image_{i}.jpg"), np.ascontiguousarray(imgs[name][:, :, ::-1]))
    env = {**os.environ, "SAM2EDGE_MODELS_DIR": str(models), "SAM2EDGE_CACHE": str(tmp_path / "empty-cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    script = Path(__file__).with_name("seed_document_script.py")
    proc = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "seed document: all examples ran" in proc.stdout
