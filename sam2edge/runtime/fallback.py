"""From a decision to runners, with fallback at load time and at run time.

:func:`open_backends` probes the machine, reads the store, decides (:mod:`.selection`) and
activates the first admitted candidate; a candidate whose runners fail to load
(``BackendUnavailableError``, ``EngineMismatchError``, ``BackendRuntimeError``) is skipped with a
logged reason. The returned :class:`BackendSet` hands the predictor one :class:`FallbackRunner`
per artifact: when a call fails with a typed runtime error (``BackendRuntimeError``, which
includes device out-of-memory, or ``torch.cuda.OutOfMemoryError``) the set logs why, releases
the failed backend, activates the next admitted candidate and retries the call there.
``strict=True`` turns every fallback off: the first failure is raised.

Nothing else is caught: a bug (``TypeError``, ``InputError``...) propagates unchanged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam2edge.backends import registry
from sam2edge.backends.base import Runner
from sam2edge.backends.registry import RunnerSources
from sam2edge.backends.torch_runner import make_torch_runners
from sam2edge.config import resolve_name
from sam2edge.contract.artifacts import Artifact
from sam2edge.engines.fingerprint import DeviceDescription, Installed, engine_fingerprint, probe_device, probe_installed
from sam2edge.engines.store import ArtifactStore, OnnxSet
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError, EngineMismatchError
from sam2edge.runtime.selection import Candidate, Decision, EngineOption, Request, Sources, decide

log = logging.getLogger("sam2edge.backends")

LOAD_ERRORS = (BackendUnavailableError, BackendRuntimeError, EngineMismatchError)
TorchLoader = Callable[[str], Any]  # device string -> loaded SAM2 model on that device


def engine_options(store: ArtifactStore, onnx: OnnxSet, device: DeviceDescription, installed: Installed,
                   gpu_index: int = 0, hash_files: bool = False) -> tuple[EngineOption, ...]:
    """The store's engine sets for one model, with the problems that keep each from running here."""
    here = engine_fingerprint(device, installed, gpu_index)
    out = []
    for es in store.engine_sets(onnx):
        arts = es.artifacts.values()
        dims_max: dict[str, int] = {}
        for a in arts:
            for name, rng in a.get("dims", {}).items():
                dims_max[name] = min(dims_max.get(name, rng["max"]), rng["max"])
        out.append(EngineOption(
            precision=es.precision, dir=str(es.dir), problems=tuple(store.problems(es, here, onnx, hash_files)),
            device_memory_bytes=es.device_memory_bytes(), weights_bytes=es.weights_bytes(),
            io_bytes=int(sum(a.get("io_bytes", 0) for a in arts)), dims_max=dims_max,
            rebuild_command=es.rebuild_command(),
        ))
    return tuple(out)


def gather_sources(variant: str, store: ArtifactStore, onnx: OnnxSet | None, device: DeviceDescription,
                   installed: Installed, torch_weights: bool, gpu_index: int = 0) -> Sources:
    if onnx is None:
        return Sources(variant, torch_weights, export_hint=f"sam2edge export {variant} --out {store.root}")
    return Sources(variant, torch_weights, str(onnx.dir), onnx.total_bytes(),
                   engine_options(store, onnx, device, installed, gpu_index))


class BackendSet:
    """What the predictor holds: ``runners`` (fallback proxies), ``active_backend``, ``backend_report()``."""

    def __init__(self, decision: Decision, factory: Callable[[Candidate], dict[str, Runner]],
                 artifacts: tuple[str, ...], strict: bool = False) -> None:
        self.decision = decision
        self.strict = strict
        self._factory = factory
        self._lock = threading.RLock()
        self._queue = list(decision.admitted)
        self._events: list[dict[str, str]] = []
        self._active: Candidate | None = None
        self._runners: dict[str, Runner] = {}
        self.specs = {}
        self._activate_next(first=True)
        self.specs = {name: r.spec for name, r in self._runners.items()}
        self.runners: dict[str, Runner] = {name: FallbackRunner(self, name) for name in artifacts if name in self.specs}

    def add_artifacts(self, names: tuple[str, ...] | list[str]) -> dict[str, Runner]:
        """Runners for more artifacts on the active backend (a model loaded for images that starts
        tracking a video); later fallbacks build them too. Returns the new fallback runners."""
        with self._lock:
            missing = [n for n in names if n not in self.runners]
            if not missing:
                return {}
            extend = getattr(self._factory, "extend", None)
            if extend is None or self._active is None:
                raise BackendUnavailableError(f"this backend set cannot add the artifacts {missing} after loading")
            extra = extend(self._active, tuple(missing), self._runners)
            for r in extra.values():
                r.activate()
            self._runners.update(extra)
            self.specs.update({name: r.spec for name, r in extra.items()})
            self._factory.artifacts = tuple(dict.fromkeys((*self._factory.artifacts, *missing)))
            added = {name: FallbackRunner(self, name) for name in missing}
            self.runners.update(added)
            return added

    def active_runner(self, name: str) -> Runner | None:
        """The active backend's own runner of artifact ``name`` (not the fallback proxy)."""
        with self._lock:
            return self._runners.get(name)

    def manifest_host_constants(self) -> Mapping[str, Any] | None:
        """The ``host_constants`` of the export this set runs from (its ONNX manifest, or the one a Triton
        server describes for a ``triton://`` model), if any."""
        onnx = getattr(self._factory, "onnx", None)
        if onnx is not None:
            consts = onnx.manifest.get("host_constants")
        else:
            consts = getattr(self._factory, "remote_host_constants", None)
        return consts if isinstance(consts, Mapping) else None

    @property
    def active_backend(self) -> str:
        return self._active.backend if self._active else "none"

    @property
    def active(self) -> Candidate | None:
        return self._active

    def backend_report(self) -> dict[str, Any]:
        """The decision (every candidate with its reason), the active backend and every fallback so far."""
        return {**self.decision.to_dict(), "active": self.active_backend, "strict": self.strict,
                "events": list(self._events)}

    def run(self, name: str, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        while True:
            with self._lock:
                runner, backend = self._runners[name], self.active_backend
            try:
                return runner.infer(feeds, check=False)
            except registry.runtime_errors() as exc:
                if self.strict:
                    raise
                with self._lock:
                    if self.active_backend == backend:  # another thread may have switched already
                        self._record(backend, "run", f"{name}: {exc}")
                        self._activate_next()

    def close(self) -> None:
        with self._lock:
            for r in self._runners.values():
                r.deactivate()
            self._runners = {}

    def _record(self, backend: str, stage: str, reason: str) -> None:
        self._events.append({"backend": backend, "stage": stage, "reason": reason})

    def _activate_next(self, first: bool = False) -> None:
        self.close()
        while self._queue:
            cand = self._queue.pop(0)
            try:
                runners = self._factory(cand)
                for r in runners.values():
                    r.activate()
            except LOAD_ERRORS as exc:
                self._record(cand.backend, "load", str(exc))
                log.warning("sam2edge: %s on %s could not load (%s)", cand.backend, cand.device, exc)
                if self.strict:
                    raise
                continue
            if not first or self._events:
                log.warning("sam2edge: falling back to %s on %s", cand.backend, cand.device)
            self._active, self._runners = cand, runners
            log.info("sam2edge: backend %s on %s (%s)", cand.backend, cand.device, cand.reason)
            return
        self._active = None
        raise BackendUnavailableError(
            "no usable backend left:\n" + self.decision.format()
            + "".join(f"\n  {e['backend']} failed at {e['stage']}: {e['reason']}" for e in self._events)
        )


class FallbackRunner(Runner):
    """A runner on the Runner contract that forwards to the BackendSet's active backend."""

    thread_safe = True  # the underlying runner serialises itself; the set's lock guards switching

    def __init__(self, owner: BackendSet, name: str) -> None:
        super().__init__(owner.specs[name])
        self.owner = owner
        self.is_active = True

    @property
    def backend(self) -> str:  # type: ignore[override]
        return self.owner.active_backend

    @property
    def active_runner(self) -> Runner | None:
        return self.owner.active_runner(self.spec.name)

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.owner.run(self.spec.name, feeds)


@dataclass
class RunnerFactory:
    """Builds one candidate's runners through the backend registry, from the store and a PyTorch loader."""

    store: ArtifactStore
    onnx: OnnxSet | None
    artifacts: tuple[str, ...]
    torch_loader: TorchLoader | None = None
    threads: int | None = None
    remote_url: str | None = None
    remote_host_constants: Mapping[str, Any] | None = None  # what the Triton server says its export recorded
    remote_variant: str | None = None  # the variant the Triton server's models record (their specs)

    def __call__(self, cand: Candidate, artifacts: tuple[str, ...] | None = None) -> dict[str, Runner]:
        if self.remote_url is not None:
            return registry.create_runners(cand.backend, RunnerSources(remote_url=self.remote_url, variant=self.remote_variant),
                                           cand.device,
                                           artifacts or self.artifacts)
        engines = None
        if cand.engine_dir is not None:
            engines = next(e for e in self.store.engine_sets(self.onnx) if str(e.dir) == cand.engine_dir)
        sources = self.store.runner_sources(self.onnx, engines, self.torch_loader, self.threads)
        return registry.create_runners(cand.backend, sources, cand.device, artifacts or self.artifacts)

    def extend(self, cand: Candidate, artifacts: tuple[str, ...], current: Mapping[str, Runner]) -> dict[str, Runner]:
        """Runners of more ``artifacts`` for the active candidate; PyTorch reuses the loaded model."""
        net = next((getattr(getattr(r, "module", None), "model", None) for r in current.values()), None)
        if registry.info(cand.backend).family == registry.TORCH and net is not None:
            return make_torch_runners(net, cand.device, artifacts)
        return self(cand, artifacts)


def open_backends(name: str, *, backend: str = "auto", device: str = "auto", batch: int = 1, video: bool = False,
                  precision: str | None = None, strict: bool = False, store_root: str | None = None,
                  artifacts: tuple[str, ...] = Artifact.IMAGE,
                  torch_loader: TorchLoader | None = None, threads: int | None = None,
                  described: tuple[DeviceDescription, Installed] | None = None,
                  variant: str | None = None, checkpoint_sha256: str | None = None,
                  remote_url: str | None = None, host_constants: dict[str, Any] | None = None) -> BackendSet:
    """Decide and load. ``name``: exported model folder, ``<variant>-<sha8>`` or variant in the store.

    ``torch_loader(device)`` returns the PyTorch model (PyTorch candidates are excluded without one).
    ``checkpoint_sha256``: use only an export made from exactly that checkpoint. ``variant``: the
    model's variant when ``name`` is a folder that may hold no usable export.
    ``described`` replaces probing (a recorded machine); the runners are still real.
    ``remote_url`` (``triton://...``, with ``variant`` and the served ``host_constants``): the models run on a
    Triton server and nothing is read from the store.
    """
    store = ArtifactStore(store_root)
    onnx: OnnxSet | None = None
    if remote_url is None:
        try:
            onnx = store.find_onnx(name, checkpoint_sha256)
        except EngineMismatchError as exc:
            if Path(name).is_dir() and torch_loader is None:  # an explicit folder, nothing else to run: say why
                raise
            log.info("sam2edge: no usable export for %s (%s)", name, exc)
    variant = onnx.variant if onnx else (variant or resolve_name(name))
    dev_desc, installed = described or (probe_device(), probe_installed(check_providers=False))
    gpu_index = registry.device_index(device) if device.startswith("cuda:") else 0
    if remote_url is not None:
        sources = Sources(variant, remote_url=remote_url)
    else:
        sources = gather_sources(variant, store, onnx, dev_desc, installed, torch_loader is not None, gpu_index)
    request = Request(backend=backend, device=device, batch=batch, video=video, precision=precision, strict=strict)
    decision = decide(dev_desc, installed, sources, request)
    log.info("sam2edge backend selection for %s:\n%s", variant, decision.format())
    if decision.chosen is None:
        raise BackendUnavailableError(
            f"no usable backend for {variant} (backend={backend!r}, device={device!r}, strict={strict}):\n"
            + decision.format()
        )
    factory = RunnerFactory(store, onnx, artifacts, torch_loader, threads, remote_url, host_constants,
                            remote_variant=variant if remote_url is not None else None)
    backends = BackendSet(decision, factory, artifacts, strict)
    return backends

