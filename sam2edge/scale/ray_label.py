"""Batch labelling on Ray: images through a Ray Data actor pool, videos one per Ray task.

The same code runs on a local cluster (``address=None``: ``ray.init()`` on this machine) and on an
existing one (``address="ray://head:10001"`` or ``"auto"``). Each actor loads one model (ONNX Runtime,
TensorRT or PyTorch as ``from_pretrained`` picks on its node, or a Triton URL) and labels one image at
a time (:func:`sam2edge.scale.labels.segment_job`); results come back as JSON with COCO RLEs and the
driver writes every file, so workers need only read access to the inputs (paths every node can read:
a shared file system). Pass ``gpus_per_actor`` on a GPU cluster: Ray then places one model per GPU share.

Ray is imported on first use; ``pip install 'sam2edge[ray]'``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sam2edge.errors import InputError, Sam2EdgeError
from sam2edge.scale.labels import ModelRequest, generate_job, segment_job, track_job

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise InputError(f"batch labelling on Ray needs ray: pip install 'sam2edge[ray]' ({exc})") from exc
    return ray


@dataclass(frozen=True)
class Cluster:
    """Where to run: ``address`` None starts a local cluster with ``num_cpus`` / ``object_store_mb``; else connect."""

    address: str | None = None
    num_cpus: int | None = None
    object_store_mb: int | None = None
    runtime_env: Mapping[str, Any] | None = None  # e.g. {"env_vars": {"PYTHONPATH": ...}} for the workers

    def connect(self) -> Any:
        """``ray.init`` once per process (an already connected driver is reused)."""
        ray = import_ray()
        if ray.is_initialized():
            return ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        env = dict(self.runtime_env) if self.runtime_env else None
        if self.address:
            ray.init(address=self.address, runtime_env=env, logging_level=logging.WARNING)
        else:
            store = self.object_store_mb * 2**20 if self.object_store_mb else None
            ray.init(num_cpus=self.num_cpus, object_store_memory=store, include_dashboard=False, runtime_env=env,
                     logging_level=logging.WARNING)
        return ray


@dataclass(frozen=True)
class Workers:
    """How many models run at once and what each holds."""

    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.actors, int) or self.actors < 1:
            raise InputError(f"actors must be an integer >= 1, got {self.actors!r}")
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise InputError(f"cpus_per_actor must be > 0 and gpus_per_actor >= 0, got {self.cpus_per_actor}, "
                             f"{self.gpus_per_actor}")


class LabelActor:
    """A Ray Data actor: one model, one image job per row (``{"job": json}`` -> ``{"result": json}``)."""

    def __init__(self, request: ModelRequest, mode: str, options: Mapping[str, Any]) -> None:
        self.model = request.load()
        self.mode, self.options = mode, dict(options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = []
        for text in batch["job"]:
            job = json.loads(str(text))
            try:
                if self.mode == "generate":
                    result = generate_job(self.model, job, self.options.get("amg"))
                else:
                    result = segment_job(self.model, job, bool(self.options.get("multimask", False)))
            except Sam2EdgeError as exc:  # a bad image or prompt fails its job, not the whole run
                result = {"id": job["id"], "file_name": job["file_name"], "error": str(exc)}
            out.append(json.dumps(result))
        return {"result": out}


def label_images(jobs: Sequence[Mapping[str, Any]], request: ModelRequest, workers: Workers = Workers(),
                 cluster: Cluster = Cluster(), mode: str = "prompts", options: Mapping[str, Any] | None = None,
                 progress: Progress | None = None) -> list[dict[str, Any]]:
    """Image jobs (:func:`~sam2edge.scale.labels.image_jobs` or ``folder_jobs``) on a Ray Data actor pool.

    mode: "prompts" (segment each job's prompts) or "generate" (automatic mask generation). Results
    arrive as they finish (``progress(done, total)``) and are returned in job order.
    """
    if mode not in ("prompts", "generate"):
        raise InputError(f"mode must be 'prompts' or 'generate', got {mode!r}")
    if not jobs:
        return []
    ray = cluster.connect()
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller's progress callback reports instead
    context.print_on_execution_start = False
    if not log.isEnabledFor(logging.INFO):
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    ds = ray.data.from_items([{"job": json.dumps(dict(j))} for j in jobs])
    ds = ds.map_batches(LabelActor, fn_constructor_args=(request, mode, dict(options or {})), batch_size=1,
                        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers.actors),
                        num_cpus=workers.cpus_per_actor, num_gpus=workers.gpus_per_actor or None)
    results = []
    for row in ds.iter_rows():
        results.append(json.loads(str(row["result"])))
        if progress:
            progress(len(results), len(jobs))
    return sorted(results, key=lambda r: r["id"])


def label_images_local(jobs: Sequence[Mapping[str, Any]], request: ModelRequest, mode: str = "prompts",
                       options: Mapping[str, Any] | None = None, progress: Progress | None = None) -> list[dict[str, Any]]:
    """The single-process path: the same per-image work, one model, in this process."""
    actor = LabelActor(request, mode, dict(options or {}))
    results = []
    for job in jobs:
        results.append(json.loads(actor({"job": [json.dumps(dict(job))]})["result"][0]))
        if progress:
            progress(len(results), len(jobs))
    return results


def _track_remote(request: ModelRequest, job: Mapping[str, Any], max_frames: int | None) -> dict[str, Any]:
    return track_job(request.load(video=True), job, max_frames)


def track_videos(jobs: Sequence[Mapping[str, Any]], request: ModelRequest, workers: Workers = Workers(),
                 cluster: Cluster = Cluster(), max_frames: int | None = None,
                 progress: Progress | None = None) -> list[dict[str, Any]]:
    """Video jobs (:func:`~sam2edge.scale.labels.video_jobs`), one Ray task per video (each loads its model),
    at most ``workers.actors`` at once. A failed video raises after the others finished (its error names it)."""
    if not jobs:
        return []
    ray = cluster.connect()
    remote = ray.remote(num_cpus=workers.cpus_per_actor, num_gpus=workers.gpus_per_actor, max_retries=0)(_track_remote)
    pending: dict[Any, Mapping[str, Any]] = {}
    queue, results, failures = list(jobs), [], []
    while queue or pending:
        while queue and len(pending) < workers.actors:
            job = queue.pop(0)
            pending[remote.remote(request, dict(job), max_frames)] = job
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        try:
            results.append(ray.get(ready[0]))
        except Exception as exc:  # noqa: BLE001 - reported with the video it belongs to
            failures.append(f"{job['file_name']}: {exc}")
        if progress:
            progress(len(results) + len(failures), len(jobs))
    if failures:
        raise InputError("videos that could not be tracked:\n  " + "\n  ".join(failures))
    return sorted(results, key=lambda r: r["id"])


def track_videos_local(jobs: Sequence[Mapping[str, Any]], request: ModelRequest, max_frames: int | None = None,
                       progress: Progress | None = None) -> list[dict[str, Any]]:
    """The single-process path for videos: one model, one video after the other."""
    model = request.load(video=True)
    results = []
    for job in jobs:
        results.append(track_job(model, job, max_frames))
        if progress:
            progress(len(results), len(jobs))
    return results
