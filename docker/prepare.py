#!/usr/bin/env python3
"""First start of the sam2edge appliance: the export in the store, then TensorRT engines for *this* GPU.

Run by ``docker/entrypoint.sh`` (the images, and the Jetson systemd service) before ``sam2edge serve``.

1. The ONNX export of ``--model`` in the store: a variant name is served by the export made from exactly
   the checkpoint it stands for (``$SAM2EDGE_MODELS_DIR/<name>.pt`` if present, else the official one);
   a missing export is made here when an exporter (PyTorch) and the checkpoint are available, and
   refused with the commands to make it elsewhere when not.
2. TensorRT engines are tied to one GPU, TensorRT and CUDA (the store's device slug), so they are never
   shipped in an image: on the first start on a GPU they are built into the store volume, later starts
   reuse them. The log says which, and why an engine set in the store was not used.

Prints the export folder on stdout (what ``sam2edge serve --model`` is given); everything else goes to stderr.
Exit codes: 0 ready, 1 no export and no way to make one here, or engines required but not buildable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sam2edge.backends import lazy
from sam2edge.config import resolve_name
from sam2edge.contract.manifest import MANIFEST_NAME
from sam2edge.engines.fingerprint import DeviceDescription, Installed, engine_fingerprint, probe_device, probe_installed
from sam2edge.engines.store import PRECISIONS, ArtifactStore, EngineSet, OnnxSet
from sam2edge.errors import Sam2EdgeError, UnknownModelError
from sam2edge.integrity import sha256_file
from sam2edge.runtime.loading import local_checkpoint, named_checkpoint_sha256

ENGINE_MODES = ("auto", "off", "require")  # $SAM2EDGE_ENGINES_MODE
Say = Callable[[str], None]


def say(message: str) -> None:
    print(f"sam2edge-prepare: {message}", file=sys.stderr, flush=True)


class PrepareError(Exception):
    """Nothing to serve, or engines required and not buildable: the message says what to do."""


# -- 1. the export ----------------------------------------------------------------------------------


def find_export(store: ArtifactStore, model: str, log: Say = say, allow_download: bool = False) -> OnnxSet:
    """The store's export of ``model`` (an export folder, a checkpoint file or a variant name); exported
    here first when it is missing and PyTorch and the checkpoint are available."""
    path = Path(model)
    if path.is_dir():
        onnx = store.find_onnx(model)
        log(f"model: export folder {onnx.dir}")
        return onnx
    if path.is_file():
        variant, sha, checkpoint = None, sha256_file(path), path
    else:
        try:
            variant = resolve_name(model)
        except UnknownModelError as exc:
            raise PrepareError(f"model {model!r} is neither an export folder, a checkpoint file nor a variant ({exc})") from None
        sha, checkpoint = named_checkpoint_sha256(variant), local_checkpoint(variant)
    matches = [s for s in store.onnx_sets() if s.checkpoint_sha256 == sha and (variant is None or s.variant == variant)]
    if matches:
        log(f"model: {model} -> export {matches[0].dir} (checkpoint {sha[:12]}...)")
        return matches[0]
    return _export_here(store, model, variant, sha, checkpoint, log, allow_download)


def _export_here(store: ArtifactStore, model: str, variant: str | None, sha: str, checkpoint: Path | None, log: Say,
                 allow_download: bool) -> OnnxSet:
    elsewhere = (f"export it on any machine with `pip install 'sam2edge[export]'`: `sam2edge export {model} --store DIR`, "
                 f"then copy DIR/<variant>-<sha8>/ into the store volume ({store.root})")
    if not lazy.available("torch"):
        raise PrepareError(f"no export of {model!r} (checkpoint {sha[:12]}...) in {store.root}, and this install has no "
                           f"exporter (PyTorch): {elsewhere}")
    if checkpoint is None and variant is not None:
        from sam2edge.download import resolve_checkpoint

        try:
            checkpoint = resolve_checkpoint(variant, download=allow_download)
        except Sam2EdgeError as exc:
            raise PrepareError(f"no export of {model!r} in {store.root} and no checkpoint to export it from ({exc}); put "
                               f"{variant}.pt into $SAM2EDGE_MODELS_DIR ({os.environ.get('SAM2EDGE_MODELS_DIR', 'unset')}), "
                               f"set SAM2EDGE_DOWNLOAD=1 to download it, or {elsewhere}") from None
    from sam2edge.export.onnx_export import export_checkpoint

    log(f"model: no export of {model} in {store.root}: exporting {checkpoint} (first start only; minutes on a CPU)")
    start = time.monotonic()
    folder = export_checkpoint(str(checkpoint), root=store.root, progress=lambda m: log(f"  export: {m}"))
    log(f"model: exported to {folder} in {time.monotonic() - start:.0f}s")
    return store.find_onnx(str(folder))


# -- 2. the engines ---------------------------------------------------------------------------------


def why_no_engines(device: DeviceDescription, installed: Installed) -> str:
    """Why this machine has no engine fingerprint (no GPU, or no TensorRT bindings)."""
    reasons = []
    if not device.gpus:
        reasons.append("no CUDA GPU visible" + (f" ({'; '.join(device.notes)})" if device.notes else ""))
    if installed.tensorrt is None:
        reasons.append("the TensorRT Python bindings are not importable")
    return "; ".join(reasons) or "no engine fingerprint"


def ensure_engines(store: ArtifactStore, onnx: OnnxSet, precision: str = "fp16", mode: str = "auto", log: Say = say,
                   described: tuple[DeviceDescription, Installed] | None = None,
                   build: Callable[..., EngineSet] | None = None) -> EngineSet | None:
    """A usable engine set of ``onnx`` for this GPU: reused from the store, else built (and kept) there.

    None when engines are off or cannot exist here (no GPU / TensorRT): ONNX Runtime serves then.
    ``described`` and ``build`` replace the machine probe and the builder (tests on recorded machines).
    """
    if mode == "off":
        log("engines: off (SAM2EDGE_ENGINES_MODE=off); serving with what the store has")
        return None
    device, installed = described or (probe_device(), probe_installed(check_providers=False))
    here = engine_fingerprint(device, installed)
    if here is None:
        why = why_no_engines(device, installed)
        if mode == "require":
            raise PrepareError(f"no TensorRT engines can be built here ({why}), and SAM2EDGE_ENGINES_MODE=require")
        log(f"engines: none for this machine: {why}; serving with ONNX Runtime")
        return None
    for engines in store.engine_sets(onnx):
        if engines.precision != precision:
            continue
        problems = store.problems(engines, here, onnx)
        if not problems:
            built = time.strftime("%Y-%m-%d %H:%M", time.localtime((engines.dir / MANIFEST_NAME).stat().st_mtime))
            log(f"engines: reusing {engines.dir} (built {built} for {here.slug()}; nothing to build)")
            return engines
        log(f"engines: not using {engines.dir}: {'; '.join(problems)}")
    target = store.engine_dir(onnx, precision, here)
    log(f"engines: none for this GPU ({here.slug()}) yet: building {precision} engines into {target}. First start on "
        f"this GPU only (minutes; 10-20 on a Jetson Orin Nano); later starts reuse them")
    if build is None:
        from sam2edge.engines.build import build_engines as build
    start = time.monotonic()
    try:
        engines = build(onnx, store=store, precision=precision, say=lambda m: log(f"  build: {m}"), described=(device, installed))
    except Sam2EdgeError as exc:
        if mode == "require":
            raise PrepareError(f"engine build failed: {exc}") from None
        log(f"engines: build failed ({exc}); serving with ONNX Runtime")
        return None
    log(f"engines: built {engines.dir} in {time.monotonic() - start:.0f}s; kept in the store for later starts")
    return engines


# -- command line -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="sam2edge-prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=env("SAM2EDGE_MODEL", "sam2.1_hiera_tiny"))
    p.add_argument("--store", default=None, help="the artifact store (default $SAM2EDGE_STORE or engines/)")
    p.add_argument("--precision", default=env("SAM2EDGE_PRECISION", "fp16"), choices=PRECISIONS)
    p.add_argument("--engines", default=env("SAM2EDGE_ENGINES_MODE", "auto"), choices=ENGINE_MODES,
                   help="auto: build when TensorRT and a GPU are here; off: never; require: fail without engines")
    p.add_argument("--download", action="store_true", default=env("SAM2EDGE_DOWNLOAD", "0") == "1",
                   help="allow downloading the official checkpoint when an export must be made here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store = ArtifactStore(args.store)
    # stdout carries only the answer: whatever the exporter or builder prints (Python or C++) goes to stderr.
    sys.stdout.flush()
    answer = os.dup(1)
    os.dup2(2, 1)
    try:
        onnx = find_export(store, args.model, allow_download=args.download)
        ensure_engines(store, onnx, args.precision, args.engines)
    except (PrepareError, Sam2EdgeError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        sys.stdout.flush()
        os.dup2(answer, 1)
        os.close(answer)
    print(onnx.model_dir, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
