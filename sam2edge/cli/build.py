"""CLI hooks for ``sam2edge build`` and ``sam2edge doctor`` (wired into :mod:`sam2edge.cli`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sam2edge.config import variant_names
from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.download import resolve_checkpoint
from sam2edge.engines import tensorrt as trtb
from sam2edge.engines.build import build_engines
from sam2edge.engines.fingerprint import DeviceDescription, Installed, engine_fingerprint, mib, probe_device, probe_installed
from sam2edge.engines.store import PRECISIONS, EngineStore, OnnxSet
from sam2edge.errors import CheckpointError, EngineMismatchError, Sam2EdgeError
from sam2edge.export.onnx_export import export_checkpoint
from sam2edge.runtime.fallback import gather_sources
from sam2edge.runtime.selection import Request, decide


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="exported ONNX folder, or a variant name / <variant>-<sha8> in the store")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp16")
    parser.add_argument("--workspace", type=int, default=trtb.DEFAULT_WORKSPACE >> 20, metavar="MiB",
                        help="TensorRT builder workspace limit in MiB (default %(default)s)")
    parser.add_argument("--max-batch", type=int, help="largest image batch / number of video objects")
    parser.add_argument("--max-prompts", type=int, help="largest number of prompts per decoder call")
    parser.add_argument("--max-points", type=int, help="largest number of points per prompt")
    parser.add_argument("--max-memory-frames", type=int, help="largest number of memory frames in memory attention")
    parser.add_argument("--artifacts", nargs="+", help="build only these artifacts")
    parser.add_argument("--engines", help="store root (default $SAM2EDGE_ENGINES or engines/)")
    parser.add_argument("--no-verify", action="store_true", help="skip the verification against ONNX Runtime")
    parser.add_argument("--print-trtexec", action="store_true",
                        help="print the equivalent trtexec commands instead of building (no TensorRT Python needed)")
    parser.add_argument("--trt-major", type=int, default=10, help="TensorRT major version of trtexec (10 or 11)")


def _limits(args: argparse.Namespace) -> dict[str, int]:
    return trtb.limits_from_options(max_batch=args.max_batch, max_prompts=args.max_prompts, max_points=args.max_points,
                                    max_memory_frames=args.max_memory_frames)


def _build_args(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("workspace", "max_batch", "max_prompts", "max_points", "max_memory_frames", "artifacts", "engines")
    return {k: getattr(args, k) for k in keys if getattr(args, k) is not None}


def run_build(args: argparse.Namespace) -> int:
    store = EngineStore(args.engines)
    try:
        onnx = find_or_export(store, args.model)
        names = trtb.artifact_order(list(args.artifacts or ARTIFACTS))
        if args.print_trtexec:
            print_trtexec(onnx, names, args.precision, _limits(args), args.workspace << 20, args.trt_major)
            return 0

        engines = build_engines(onnx, store=store, precision=args.precision, workspace=args.workspace << 20,
                                limits=_limits(args), artifacts=names, verify=not args.no_verify,
                                build_args=_build_args(args))
    except Sam2EdgeError as exc:
        print(f"sam2edge build: {exc}", file=sys.stderr)
        return 1
    print(f"engines written to {engines.dir}")
    return 0


def find_or_export(store: EngineStore, model: str) -> OnnxSet:
    """The store's export of ``model``; a checkpoint file (or a cached official checkpoint) is exported first."""

    try:
        return store.find_onnx(model)
    except EngineMismatchError:
        if not Path(model).is_file():
            try:
                resolve_checkpoint(model, download=False)
            except CheckpointError:
                raise EngineMismatchError(
                    f"no export of {model!r} under {store.root} and no local checkpoint: "
                    f"run `sam2edge export {model} --out {store.root}` first (it downloads official checkpoints)"
                ) from None

    print(f"{model}: not exported yet, exporting to {store.root} first", file=sys.stderr)
    return store.find_onnx(str(export_checkpoint(model, root=store.root, progress=lambda m: print(m, file=sys.stderr))))


def print_trtexec(onnx: OnnxSet, names: list[str], precision: str, limits: dict[str, int], workspace: int,
                  trt_major: int) -> None:
    out_dir = onnx.model_dir / "tensorrt" / precision / "trtexec"
    print(f"# {onnx.variant}: {precision} engines with trtexec (TensorRT {trt_major}.x) into {out_dir}")
    print("# engines built this way carry no sam2edge manifest: use them with trtexec/Triton/DeepStream,")
    print("# or build with `sam2edge build` where the TensorRT Python bindings exist.")
    print(f"mkdir -p {out_dir}")
    for name in names:
        src = onnx.artifact_path(name)
        policy = None
        if precision != "fp32":
            try:
                policy = trtb.load_policy(src, name, precision)
            except ImportError:
                print(f"# onnx is not installed: no --layerPrecisions for {name} (pip install onnx)")
        if trt_major >= 11 and precision != "fp32":
            print(f"# TensorRT 11 is strongly typed: first convert {src.name} to mixed precision (ModelOpt AutoCast)")
            src = src.with_suffix(f".{precision}.onnx")
        print(trtb.trtexec_command(src, out_dir / f"{name}.engine", ARTIFACTS[name], precision, limits, workspace,
                                   policy, out_dir / "timing.cache", trt_major))


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", help="store root (default $SAM2EDGE_ENGINES or engines/)")
    parser.add_argument("--batch", type=int, default=1, help="batch size to plan memory for (default 1)")
    parser.add_argument("--json", action="store_true", help="print the machine description as JSON too")


def run_doctor(args: argparse.Namespace) -> int:
    """Print the machine, backends, store and the auto decision; 1 when nothing can run."""
    device, installed = probe_device(), probe_installed(check_providers=True)
    report = doctor_report(device, installed, EngineStore(args.engines), args.batch)
    print(report.text)
    if args.json:
        print(json.dumps({"device": device.to_dict(), "installed": installed.to_dict()}, indent=2))
    return 0 if report.usable else 1


class DoctorReport:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.usable = False

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def doctor_report(device: DeviceDescription, installed: Installed, store: EngineStore, batch: int = 1) -> DoctorReport:
    """The doctor's text and verdict, from a (probed or recorded) machine and a store."""
    r = DoctorReport()
    r.add("machine")
    for g in device.gpus:
        shared = ", shares memory with the CPU" if device.shares_memory(g) else ""
        r.add(f"  GPU {g.index}: {g.name} (compute {g.compute_capability}), {mib(g.total_bytes)} total, "
              f"{mib(device.usable_free_bytes(g)[0])} usable free{shared}")
    if not device.gpus:
        r.add("  GPU: none")
    r.add(f"  CUDA driver: {device.cuda_driver_version or 'none'}")
    if device.jetson:
        j = device.jetson
        r.add(f"  Jetson: {j.model}, L4T {j.l4t_release} (JetPack {j.jetpack or '?'}), power mode {j.power_mode or '?'}")
    r.add(f"  memory: {mib(device.mem_total_bytes)} total, {mib(device.mem_available_bytes)} available")
    r.add("software")
    r.add(f"  TensorRT: {installed.tensorrt or 'not installed'}")
    providers = ", ".join(installed.ort_providers) or "none"
    r.add(f"  ONNX Runtime: {installed.onnxruntime or 'not installed'}"
          + (f" (working providers: {providers})" if installed.onnxruntime else ""))
    r.add(f"  PyTorch: {installed.torch or 'not installed'}"
          + (f" (CUDA {installed.torch_cuda})" if installed.torch_cuda else (" (no CUDA)" if installed.torch else "")))
    r.add(f"  cuda-python: {installed.cuda_python or 'not installed'}; CUDA runtime {installed.cuda_runtime or 'none'}")
    for note in (*device.notes, *installed.notes):
        r.add(f"  note: {note}")
    fp = engine_fingerprint(device, installed)
    r.add(f"  engine fingerprint here: {fp.slug() if fp else 'none (needs TensorRT and a CUDA GPU)'}")
    _doctor_store(r, device, installed, store, batch)
    return r


def _doctor_store(r: DoctorReport, device: DeviceDescription, installed: Installed, store: EngineStore,
                  batch: int) -> None:
    r.add(f"store {store.root}")
    models = store.onnx_sets()
    if not models:
        r.add("  no exported models (sam2edge export NAME --out STORE)")
    for onnx in models:
        sources = gather_sources(onnx.variant, store, onnx, device, installed, torch_weights=False)
        r.add(f"  {onnx.model_dir.name}: ONNX export, {mib(sources.onnx_bytes)}")
        for e in sources.engines:
            state = "usable here" if not e.problems else "NOT usable: " + "; ".join(e.problems)
            r.add(f"    tensorrt {e.precision} {Path(e.dir).name}: {state}")
            if e.problems:
                r.add(f"      rebuild: {e.rebuild_command}")
        _doctor_decision(r, decide(device, installed, sources, Request(batch=batch)), f"{onnx.variant} (batch {batch})")
    # Without an export, the PyTorch backends still run from a checkpoint.

    generic = gather_sources(variant_names()[0], store, None, device, installed, torch_weights=True)
    _doctor_decision(r, decide(device, installed, generic, Request(batch=batch)),
                     f"a checkpoint without export ({generic.variant}, batch {batch})")


def _doctor_decision(r: DoctorReport, decision: Any, label: str) -> None:
    chosen = decision.chosen
    r.add(f"auto backend for {label}: {chosen.backend + ' on ' + chosen.device if chosen else 'NOTHING USABLE'}")
    for line in decision.format().splitlines():
        r.add("  " + line)
    r.usable = r.usable or chosen is not None
