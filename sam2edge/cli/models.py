"""``sam2edge models [--verify]``: every variant, what of it is on this machine, and what ``auto`` would run.

For each official variant: the checkpoints found where names resolve (``$SAM2EDGE_MODELS_DIR/<name>.pt``,
then the download cache) and whether each is the published file; the exports in the store (and
whether they were made from the published checkpoint), their TensorRT engine sets and whether they
run here; and the backend ``auto`` would pick (the doctor's decision, see ``sam2edge doctor``).

Whether a file is the published one takes its sha256, which reads the whole file (0.7 s for tiny's
156 MB on a busy 2-core machine; several seconds for large's 900 MB). Files in the download cache were verified when they were
downloaded and carry the cache's stamp, so they are not read again; hand-copied files are only
hashed with --verify (nothing is written next to them).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from sam2edge.cli.common import add_store_option
from sam2edge.cli.doctor import auto_decision, decision_summary, engine_lines
from sam2edge.config import get_config, variant_names
from sam2edge.download import CACHE_ENV, MIRROR_ENV, MODELS_DIR_ENV, cached_checkpoint_path, default_cache_dir, is_verified
from sam2edge.download import models_dir_checkpoint as models_dir_file
from sam2edge.engines.fingerprint import probe_device, probe_installed
from sam2edge.engines.store import ArtifactStore
from sam2edge.integrity import sha256_file
from sam2edge.runtime.fallback import gather_sources


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument("--verify", action="store_true",
                        help="hash every local checkpoint to tell whether it is the published file (reads each file)")
    parser.add_argument("--batch", type=int, default=1, help="batch size to plan memory for (default 1)")


def run(args: argparse.Namespace) -> int:
    store = ArtifactStore(args.store)
    device, installed = probe_device(), probe_installed(check_providers=True)
    print(f"${MODELS_DIR_ENV}: {os.environ.get(MODELS_DIR_ENV) or 'not set'}")
    print(f"download cache (${CACHE_ENV}): {default_cache_dir()}")
    print(f"downloads from: {os.environ.get(MIRROR_ENV) or 'the official host'}" + ("" if os.environ.get(MIRROR_ENV)
                                                                                     else f" (set ${MIRROR_ENV} for a mirror)"))
    print(f"store: {store.root}")
    exports = store.onnx_sets()
    for name in variant_names():
        print(name)
        found = checkpoint_lines(name, args.verify)
        for line in found or [f"checkpoint: none (`sam2edge download {name}`, or copy {get_config(name).filename} "
                              f"into ${MODELS_DIR_ENV})"]:
            print("  " + line)
        mine = [o for o in exports if o.variant == name]
        for onnx in mine:
            published = onnx.checkpoint_sha256 == get_config(name).sha256
            made_from = "the published checkpoint" if published else f"another checkpoint ({(onnx.checkpoint_sha256 or '?')[:8]})"
            print(f"  export: {onnx.model_dir.name} (ONNX, from {made_from})")
            sources = gather_sources(name, store, onnx, device, installed, torch_weights=False)
            for line in engine_lines(sources):
                print("    " + line)
            decision = auto_decision(name, store, onnx, device, installed, args.batch, torch_weights=bool(found))
            print(f"    auto: {decision_summary(decision)}")
        if not mine:
            decision = auto_decision(name, store, None, device, installed, args.batch, torch_weights=True)
            state = "" if found else "once a checkpoint is here, "
            print(f"  auto: {state}{decision_summary(decision)}")
    return 0


def checkpoint_lines(name: str, verify: bool) -> list[str]:
    """Where ``name``'s checkpoint is found, in resolution order, and whether each is the published file."""
    cfg = get_config(name)
    lines = []
    local = models_dir_file(name)
    if local is not None:
        lines.append(f"checkpoint: {local} (${MODELS_DIR_ENV}, used first), {_mb(local)}: {_verdict(local, cfg.sha256, verify, False)}")
    cached = cached_checkpoint_path(name)
    if cached.is_file():
        lines.append(f"checkpoint: {cached} (download cache), {_mb(cached)}: {_verdict(cached, cfg.sha256, verify, True)}")
    return lines


def _verdict(path: Path, sha256: str, verify: bool, cached: bool) -> str:
    if not sha256:  # EdgeTAM: its authors publish no hash, so there is nothing to compare with
        return "no sha256 is published for this model: not checked (pass --sha256 to `sam2edge download`)"
    if verify:
        start = time.perf_counter()
        same = sha256_file(path) == sha256
        took = f"hashed in {time.perf_counter() - start:.1f} s"
        return f"the published file ({took})" if same else f"NOT the published file (sha256 differs; {took})"
    if cached:  # the cache's own check (a stamp written when it was verified; hashes if there is none)
        return "the published file (verified)" if is_verified(path, sha256) else "NOT the published file (sha256 differs)"
    return "not checked (run with --verify to hash it)"


def _mb(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.0f} MB"

