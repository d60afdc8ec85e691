"""Prometheus metrics on ``GET /metrics`` (prometheus-client, one registry per app).

requests and latency per route template and status, queue depths per lane, decoder batch
sizes, embedding / logits cache hits, misses, entries and bytes (read from the caches' own
stats at scrape time), the active backend, video sessions and streams, accelerator memory
when it can be read (PyTorch's CUDA allocator if PyTorch is loaded, else ``nvidia-smi``), and
the process collector (resident memory, CPU seconds).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("sam2edge_requests", "HTTP requests answered", ["route", "method", "status"], registry=r)
        self.latency = Histogram("sam2edge_request_seconds", "time to answer, per route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("sam2edge_queue_depth", "jobs waiting or running per lane (clicks: admitted clicks)",
                                 ["lane"], registry=r)
        self.batch_size = Histogram("sam2edge_decoder_batch_size", "prompts per decoder call", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.sessions = Gauge("sam2edge_video_sessions", "open video sessions", registry=r)
        self.streams = Gauge("sam2edge_streams", "open camera streams", registry=r)
        self.frames = Counter("sam2edge_video_frames", "video and stream frames tracked", ["kind"], registry=r)
        ProcessCollector(registry=r)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def set_depth(self, lane: str, depth: int) -> None:
        self.queue_depth.labels(lane).set(depth)

    def add_state(self, read: Callable[[], dict[str, Any]]) -> None:
        """Register a collector over the service's state (caches, backend, accelerator memory)."""
        self.registry.register(_StateCollector(read))

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StateCollector:
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def describe(self) -> list:
        return []  # values are only known at scrape time

    def collect(self):
        state = self._read()
        for cache_name, stats in state.get("caches", {}).items():
            for key in ("hits", "misses", "evictions"):
                c = CounterMetricFamily(f"sam2edge_{cache_name}_cache_{key}", f"{cache_name} cache {key}")
                c.add_metric([], float(stats.get(key) or 0))
                yield c
            for key in ("entries", "bytes"):
                g = GaugeMetricFamily(f"sam2edge_{cache_name}_cache_{key}", f"{cache_name} cache {key}")
                g.add_metric([], float(stats.get(key) or 0))
                yield g
        backend = GaugeMetricFamily("sam2edge_backend_info", "the loaded model and its active backend (1)",
                                    labels=["model", "backend"])
        if state.get("backend"):
            backend.add_metric([state.get("model", ""), state["backend"]], 1.0)
        yield backend
        ready = GaugeMetricFamily("sam2edge_ready", "1 once the model is loaded")
        ready.add_metric([], 1.0 if state.get("ready") else 0.0)
        yield ready
        mem = accelerator_memory()
        if mem:
            g = GaugeMetricFamily("sam2edge_accelerator_memory_bytes", "accelerator memory", labels=["device", "kind"])
            for device, kind, value in mem:
                g.add_metric([device, kind], float(value))
            yield g


_SMI_CACHE: tuple[float, list] = (0.0, [])


def accelerator_memory() -> list[tuple[str, str, int]]:
    """[(device, "used" | "total", bytes)]: PyTorch's view when it is loaded with CUDA, else nvidia-smi
    (cached 10 s), else nothing (a CPU-only machine)."""
    global _SMI_CACHE
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        out = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            out += [(f"cuda:{i}", "used", total - free), (f"cuda:{i}", "total", total)]
        return out
    if time.monotonic() - _SMI_CACHE[0] < 10:
        return _SMI_CACHE[1]
    out = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            text = subprocess.run([smi, "--query-gpu=index,memory.used,memory.total", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=2, check=True).stdout
            for line in text.strip().splitlines():
                idx, used, total = (v.strip() for v in line.split(","))
                out += [(f"cuda:{idx}", "used", int(used) << 20), (f"cuda:{idx}", "total", int(total) << 20)]
        except (OSError, subprocess.SubprocessError, ValueError):
            out = []
    _SMI_CACHE = (time.monotonic(), out)
    return out
