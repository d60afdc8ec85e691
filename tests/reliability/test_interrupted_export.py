"""An interrupted export leaves nothing half-made (issue 13).

Probe that failed on the earlier main: SIGTERM during `sam2edge export` left onnx/ without a manifest
(plus hundreds of MB of temporary files), after which from_pretrained(checkpoint) failed with
"is not a known SAM2 variant" even where PyTorch could run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sam2edge.export.staging import remove_stale, staged_folder

ROOT = Path(__file__).resolve().parents[2]


def test_a_failed_block_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "onnx"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_folder(target) as stage:
        (stage / "new.txt").write_text("new")
        raise RuntimeError("verification failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]
    assert (target / "old.txt").read_text() == "old" and not (target / "new.txt").exists()
    with staged_folder(target) as stage:
        (stage / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


def test_leftovers_of_a_killed_process_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".onnx.staging-{dead.pid}-abcd"
    live = tmp_path / f".onnx.staging-{os.getpid()}-abcd"  # this process: still running, kept
    stale.mkdir()
    live.mkdir()
    assert remove_stale(tmp_path / "onnx") == [stale]
    assert live.is_dir() and not stale.exists()


def test_sigterm_during_export_leaves_no_folder_and_pytorch_still_loads(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from sam2edge.model.checkpoint import write_random_checkpoint

    ckpt = write_random_checkpoint(tmp_path / "t.pt", "sam2.1_hiera_tiny", seed=3)
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "sam2edge", "export", str(ckpt), "--store", str(store),
                             "--artifacts", "memory_encoder", "prompt_decoder", "--threads", "1"],
                            stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    deadline = time.monotonic() + 600
    for line in proc.stderr:  # wait until the exporter is writing into its staging folder
        seen.append(line)
        if "exporting" in line or time.monotonic() > deadline:
            break
    assert list(store.glob("*/.onnx.staging-*")), "".join(seen)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    assert list(store.rglob("*")) == [next(store.iterdir())], f"left behind: {list(store.rglob('*'))}"
    from sam2edge import AutoModel

    model = AutoModel.from_pretrained(str(ckpt), store_dir=str(store))
    assert model.active_backend == "torch-cpu"
