"""The official EdgeTAM code as the oracle, run in a subprocess of its own venv.

The official package installs a module named ``sam2`` (as does the official SAM2 oracle in the
test environment), so it lives in its own venv, made by ``scripts/edgetam_oracle_env.sh``
(CI runs it from ``.ci/run``). Tests send it inputs as .npz and read its outputs back
(tests/edgetam/official_worker.py); our side runs in the test process as usual.

Where the venv is missing the oracle tests skip with the command that makes it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("official_worker.py")
DEFAULT_VENV = REPO / ".venv-edgetam"
TIMEOUT_S = 600


def oracle_python() -> Path:
    """The venv interpreter: $SAM2EDGE_EDGETAM_PYTHON, else .venv-edgetam/bin/python in the checkout."""
    env = os.environ.get("SAM2EDGE_EDGETAM_PYTHON")
    return Path(env) if env else DEFAULT_VENV / "bin" / "python"


def _venv_ready(python: Path) -> bool:
    """Cheap check (no interpreter start): the interpreter and the official perceiver module exist."""
    if not python.is_file():
        return False
    venv = python.parent.parent
    return any(venv.glob("lib/python3*/site-packages/sam2/modeling/perceiver.py"))


HAVE_EDGETAM_ORACLE = _venv_ready(oracle_python())
requires_edgetam_oracle = pytest.mark.skipif(
    not HAVE_EDGETAM_ORACLE,
    reason=f"EdgeTAM oracle venv not found at {oracle_python()} (make it: bash scripts/edgetam_oracle_env.sh; "
    "CI does this in .ci/run)",
)


def run_official(checkpoint: str | os.PathLike, tasks: Sequence[Mapping], arrays: Mapping[str, np.ndarray]) -> dict:
    """Run ``tasks`` on the official EdgeTAM model loaded from ``checkpoint``; {"<id>/<output>": array}.

    ``arrays`` are the tasks' inputs, named ``<id>/<input>``. Raises RuntimeError with the worker's
    stderr if it fails.
    """
    with tempfile.TemporaryDirectory(prefix="edgetam-oracle-") as tmp:
        request, out = Path(tmp) / "request.npz", Path(tmp) / "out.npz"
        np.savez(request, __tasks__=np.asarray(json.dumps(list(tasks))), **arrays)
        env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(oracle_python()), str(WORKER), str(checkpoint), str(request), str(out)],
            capture_output=True, text=True, timeout=TIMEOUT_S, env=env, cwd=str(REPO),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"EdgeTAM oracle failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        print(f"[edgetam oracle] subprocess {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        for line in proc.stderr.splitlines():
            if line.startswith("[edgetam oracle]"):
                print(line, file=sys.stderr)
        with np.load(out, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
