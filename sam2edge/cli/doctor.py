"""``sam2edge doctor``: the machine (GPUs, memory, Jetson), the backends installed, the store, and what
``auto`` would pick for each exported model and why. Exit code 1 when nothing can run.

``sam2edge doctor --self-test [--model NAME]``: on a GPU machine, build, verify and time every artifact of
an exported model for each precision (engines go into the store as ``sam2edge build`` writes them) and
print a Markdown table to paste into an issue. Exit code 1 when any row failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sam2edge.cli.common import add_store_option
from sam2edge.config import variant_names
from sam2edge.engines.fingerprint import DeviceDescription, Installed, engine_fingerprint, mib, probe_device, probe_installed
from sam2edge.engines.selftest import format_report, run_self_test
from sam2edge.engines.store import PRECISIONS, ArtifactStore
from sam2edge.runtime.fallback import gather_sources
from sam2edge.runtime.selection import Request, decide


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_option(parser)
    parser.add_argument("--batch", type=int, default=1, help="batch size to plan memory for (default 1)")
    parser.add_argument("--json", action="store_true", help="print the machine description as JSON too")
    test = parser.add_argument_group("self-test (GPU)")
    test.add_argument("--self-test", action="store_true",
                      help="build, verify and time every artifact on this GPU and print a table for an issue")
    test.add_argument("--model", help="exported model to test (default: the only one in the store)")
    test.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["fp32", "fp16"])
    test.add_argument("--artifacts", nargs="+", help="test only these artifacts")
    test.add_argument("--runs", type=int, default=20, help="timed calls per engine (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    """Print the machine, backends, store and the auto decision; 1 when nothing can run."""
    if args.self_test:
        return self_test(args)
    device, installed = probe_device(), probe_installed(check_providers=True)
    report = doctor_report(device, installed, ArtifactStore(args.store), args.batch)
    print(report.text)
    if args.json:
        print(json.dumps({"device": device.to_dict(), "installed": installed.to_dict()}, indent=2))
    return 0 if report.usable else 1


def self_test(args: argparse.Namespace) -> int:
    """``--self-test``: the machine, then one table row per (artifact, precision); 1 when any row failed."""
    device, installed = probe_device(), probe_installed(check_providers=False)
    if engine_fingerprint(device, installed) is None:
        print("self-test: needs a CUDA GPU and TensorRT here; `sam2edge doctor` says which is missing", file=sys.stderr)
        return 1
    store = ArtifactStore(args.store)
    models = [store.find_onnx(args.model)] if args.model else store.onnx_sets()
    if len(models) != 1:
        names = ", ".join(m.model_dir.name for m in models) or "none"
        print(f"self-test: pass --model (exported models under {store.root}: {names}; "
              f"`sam2edge export NAME --out {store.root}` makes one)", file=sys.stderr)
        return 1
    rows = run_self_test(models[0], store, (device, installed), args.precisions, args.artifacts, args.runs,
                         say=lambda m: print(m, file=sys.stderr))
    print(format_report(rows, device, installed, models[0].variant, args.runs))
    return 0 if rows and all(r.status == "OK" for r in rows) else 1


class DoctorReport:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.usable = False

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def doctor_report(device: DeviceDescription, installed: Installed, store: ArtifactStore, batch: int = 1) -> DoctorReport:
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


def _doctor_store(r: DoctorReport, device: DeviceDescription, installed: Installed, store: ArtifactStore,
                  batch: int) -> None:
    r.add(f"store {store.root}")
    models = store.onnx_sets()
    if not models:
        r.add("  no exported models (sam2edge export NAME --out STORE)")
    for onnx in models:
        sources = gather_sources(onnx.variant, store, onnx, device, installed, torch_weights=False)
        r.add(f"  {onnx.model_dir.name}: ONNX export, {mib(sources.onnx_bytes)}")
        for line in engine_lines(sources):
            r.add("    " + line)
        _doctor_decision(r, decide(device, installed, sources, Request(batch=batch)), f"{onnx.variant} (batch {batch})")
    # Without an export, the PyTorch backends still run from a checkpoint.
    _doctor_decision(r, auto_decision(variant_names()[0], store, None, device, installed, batch, torch_weights=True),
                     f"a checkpoint without export ({variant_names()[0]}, batch {batch})")


def auto_decision(variant: str, store: ArtifactStore, onnx: Any, device: DeviceDescription, installed: Installed,
                  batch: int = 1, torch_weights: bool = False) -> Any:
    """What ``auto`` would pick for ``variant`` from one export (or none) and, if there is one, a checkpoint."""
    sources = gather_sources(variant, store, onnx, device, installed, torch_weights=torch_weights)
    return decide(device, installed, sources, Request(batch=batch))


def engine_lines(sources: Any) -> list[str]:
    """One line per TensorRT engine set of an export: usable here, or why not and how to rebuild it."""
    lines = []
    for e in sources.engines:
        state = "usable here" if not e.problems else "NOT usable: " + "; ".join(e.problems)
        lines.append(f"tensorrt {e.precision} {Path(e.dir).name}: {state}")
        if e.problems:
            lines.append(f"  rebuild: {e.rebuild_command}")
    return lines


def decision_summary(decision: Any) -> str:
    """``backend on device (reason)``, or what kept every backend out."""
    chosen = decision.chosen
    if chosen is not None:
        return f"{chosen.backend} on {chosen.device} ({chosen.reason})"
    return "NOTHING USABLE (" + "; ".join(f"{c.backend}: {c.reason}" for c in decision.candidates[:3]) + ")"


def _doctor_decision(r: DoctorReport, decision: Any, label: str) -> None:
    chosen = decision.chosen
    r.add(f"auto backend for {label}: {chosen.backend + ' on ' + chosen.device if chosen else 'NOTHING USABLE'}")
    for line in decision.format().splitlines():
        r.add("  " + line)
    r.usable = r.usable or chosen is not None
