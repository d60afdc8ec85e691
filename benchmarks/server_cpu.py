"""The server under concurrent clicks, batching off vs on, against the library's own batched decoder call.

    python benchmarks/server_cpu.py --onnx DIR [--clients 1 4 16] [--clicks 96] [--reps 2] [--size 1280x720]

DIR is an exported sam2.1_hiera_tiny folder (``sam2edge export``); without ``--onnx`` a random-weight
checkpoint is written and exported first (minutes). Two ``sam2edge serve`` processes run side by side on
127.0.0.1 (``--no-batching`` and the default coalescing), ONNX Runtime on the CPU, same export. For each
client count N, N asyncio clients click on one cached embedding (a single positive point each, Roboflow
JSON, ``format=rle``, multimask) until ``--clicks`` clicks are answered; each client keeps one request in
flight on its own keep-alive connection (``--client raw``, the default: a minimal HTTP/1.1 client on asyncio
streams that reads every answer whole, checks its status and parses its JSON, ~0.4 ms CPU per click;
``--client httpx``: httpx, ~2.7 ms); p50 / p99 latency and clicks per
second are measured. The library figure is ``segment_images`` on the same embedding with N prompts in one
call ([N,1,2] points: one decoder run, the same host work), clicks/s = N / its median time. Runs are
interleaved (library, off, on for each N, repeated ``--reps`` times); the library answers as many clicks
per rep as each server (``--clicks // N`` calls). The table shows medians over reps (p99 over all clicks);
"vs library" is the median of each rep's ratio (server and library measured back to back) and its range.
The load average before and after is recorded: the machine may be shared.
CPU ms/click is the CPU time each path spends per answered click (the server process, all threads; the
library's calls in this process); the client column is this process's CPU per click while it drives
the server. On a small CPU the load generator shares the cores with the server, so clicks/s alone
understates the server; the CPU columns separate its own cost from the client's.
Writes benchmarks/results/server_cpu.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, time_it, write_json  # noqa: E402


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_random() -> Path:
    from sam2edge.export.onnx_export import ExportSettings, export_checkpoint
    from sam2edge.model.checkpoint import write_random_checkpoint

    tmp = Path(tempfile.mkdtemp(prefix="sam2edge-bench-"))
    ckpt = write_random_checkpoint(tmp / "sam2.1_hiera_tiny.pt", "sam2.1_hiera_tiny", seed=0)
    print("exporting a random-weight sam2.1_hiera_tiny (minutes)...", flush=True)
    return export_checkpoint(ckpt, root=tmp / "engines", settings=ExportSettings(threads=2))


class Server:
    """A ``sam2edge serve`` subprocess."""

    def __init__(self, onnx: Path, batching: bool, window_ms: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "sam2edge", "serve", "--model", str(onnx), "--backend", "onnxruntime",
               "--port", str(self.port), "--log-level", "warning", "--click-queue", "4096",
               "--batch-window-ms", str(window_ms)] + ([] if batching else ["--no-batching"])
        self.proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[1], stderr=subprocess.PIPE, text=True)

    def wait_ready(self, client) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stderr.read()}")
            try:
                if client.get(self.url + "/readyz").status_code == 200:
                    return
            except Exception:
                pass
            time.sleep(0.5)
        raise RuntimeError("server did not become ready")

    def batch_stats(self, client) -> tuple[float, float]:
        text = client.get(self.url + "/metrics").text
        pick = lambda name: float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith(name + " ")))  # noqa: E731
        return pick("sam2edge_decoder_batch_size_sum"), pick("sam2edge_decoder_batch_size_count")

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (user + system, all threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def click_body(rng: random.Random, image_id: str, size: tuple[int, int]) -> dict:
    w, h = size
    return {"image_id": image_id, "format": "rle", "multimask_output": True,
            "prompts": [{"points": [{"x": rng.uniform(0, w), "y": rng.uniform(0, h), "positive": True}]}]}


async def hammer(url: str, image_id: str, clients: int, clicks: int, size: tuple[int, int], client: str = "raw") -> dict:
    """N closed-loop clients (one request in flight each) until ``clicks`` clicks are answered."""
    rng = random.Random(clients)
    latencies: list[float] = []
    per_client = max(1, clicks // clients)
    run_client = _raw_client if client == "raw" else _httpx_client
    t0 = time.perf_counter()
    await asyncio.gather(*(run_client(url, lambda: click_body(rng, image_id, size), per_client, latencies)
                           for _ in range(clients)))
    wall = time.perf_counter() - t0
    return {"latencies_ms": [x * 1e3 for x in latencies], "wall_s": wall, "clicks": len(latencies)}


async def _raw_client(url: str, body_of, n: int, latencies: list[float]) -> None:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: on a 2-core machine the load
    generator shares the cores with the server, and httpx spends ~2.7 ms of CPU per click that
    a remote client would not take from the server. Every answer is still read whole, its status
    checked and its JSON parsed."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        for _ in range(n):
            body = json.dumps(body_of()).encode()
            head = (f"POST /sam2/segment_image HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            t0 = time.perf_counter()
            writer.write(head + body)
            status = int((await reader.readline()).split()[1])
            length = None
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if length is None:
                raise RuntimeError("the server answered without a Content-Length")
            answer = json.loads(await reader.readexactly(length))
            latencies.append(time.perf_counter() - t0)
            if status != 200 or len(answer.get("predictions", ())) != 1:
                raise RuntimeError(f"status {status}: {answer}")
    finally:
        writer.close()


async def _httpx_client(url: str, body_of, n: int, latencies: list[float]) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=600) as client:
        for _ in range(n):
            body = body_of()
            t0 = time.perf_counter()
            r = await client.post(url + "/sam2/segment_image", json=body)
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()


def library_rate(model, emb, clients: int, size: tuple[int, int], runs: int) -> dict:
    rng = np.random.default_rng(clients)
    w, h = size
    coords = (rng.random((clients, 1, 2)) * np.array([w, h])).astype(np.float32)
    labels = np.ones((clients, 1), np.int32)
    cpu0 = time.process_time()
    t = time_it(lambda: model.segment_images(embeddings=emb, point_coordinates=coords, point_labels=labels,
                                             multi_mask_output=True), runs=runs, warmup=1)
    cpu_ms = 1e3 * (time.process_time() - cpu0) / ((runs + 1) * clients)
    return {**t, "clicks_per_s": clients / (t["median_ms"] / 1e3), "cpu_ms_per_click": cpu_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", default=None, help="exported sam2.1_hiera_tiny folder")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--clicks", type=int, default=96, help="clicks answered per configuration and rep")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--size", default="1280x720", help="image WxH")
    ap.add_argument("--window-ms", type=float, default=3.0, help="the batching server's collection window")
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="load generator: a minimal HTTP/1.1 client on asyncio streams (default), or httpx")
    args = ap.parse_args()
    import httpx

    from sam2edge import AutoModel
    from sam2edge.server.images import decode_image_bytes  # noqa: F401  (fails early without the server extra)

    load_before = os.getloadavg()
    onnx = Path(args.onnx) if args.onnx else export_random()
    w, h = (int(v) for v in args.size.split("x"))
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(128, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    servers = {"off": Server(onnx, False, args.window_ms), "on": Server(onnx, True, args.window_ms)}
    model = AutoModel.from_pretrained(str(onnx), backend="onnxruntime")
    emb = model.embed_images(rgb, input_color_format="rgb")[0]
    import base64

    import cv2

    png = base64.b64encode(cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()).decode()
    results: dict = {"library": {}, "off": {}, "on": {}}
    try:
        with httpx.Client(timeout=600) as c:
            ids = {}
            for name, srv in servers.items():
                srv.wait_ready(c)
                ids[name] = c.post(srv.url + "/sam2/embed_image", json={"image": {"type": "base64", "value": png}}).json()["image_id"]
                asyncio.run(hammer(srv.url, ids[name], 2, 4, (w, h), args.client))  # warm up
            for rep in range(args.reps):
                for n in args.clients:
                    results["library"].setdefault(n, []).append(
                        library_rate(model, emb, n, (w, h), runs=max(3, args.clicks // n)))
                    for name, srv in servers.items():
                        s0, server0, client0 = srv.batch_stats(c), srv.cpu_s(), time.process_time()
                        run = asyncio.run(hammer(srv.url, ids[name], n, args.clicks, (w, h), args.client))
                        client1, server1, s1 = time.process_time(), srv.cpu_s(), srv.batch_stats(c)
                        # On a 2-core machine the load generator (this process) shares the CPU with the
                        # server: the CPU each side spends per click separates the server's own cost.
                        run["server_cpu_ms_per_click"] = 1e3 * (server1 - server0) / run["clicks"]
                        run["client_cpu_ms_per_click"] = 1e3 * (client1 - client0) / run["clicks"]
                        run["mean_batch"] = (s1[0] - s0[0]) / max(1.0, s1[1] - s0[1])
                        results[name].setdefault(n, []).append(run)
                        print(f"rep {rep} batching {name:>3} clients {n:>2}: {run['clicks'] / run['wall_s']:.1f} clicks/s, "
                              f"p50 {np.percentile(run['latencies_ms'], 50):.0f} ms", flush=True)
    finally:
        for srv in servers.values():
            srv.stop()
    load_after = os.getloadavg()

    rows, summary = [], {}
    for n in args.clients:
        lib = statistics.median(r["clicks_per_s"] for r in results["library"][n])
        lib_ms = statistics.median(r["median_ms"] for r in results["library"][n])
        lib_cpu = statistics.median(r["cpu_ms_per_click"] for r in results["library"][n])
        rows.append(["library, one call of N prompts", n, lib_ms, lib_ms, 1.0, lib, float(n), "1.00", lib_cpu, 0.0])
        summary[f"library_{n}"] = {"clicks_per_s": lib, "call_ms": lib_ms, "cpu_ms_per_click": lib_cpu}
        for name in ("off", "on"):
            runs = results[name][n]
            lat = [x for r in runs for x in r["latencies_ms"]]
            p50, p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
            rate = statistics.median(r["clicks"] / r["wall_s"] for r in runs)
            # The ratio of each rep (library and server measured back to back), then its median: the
            # machine's speed drifts over minutes, and a ratio of two medians mixes reps.
            ratios = [r["clicks"] / r["wall_s"] / lr["clicks_per_s"] for r, lr in zip(runs, results["library"][n])]
            ratio = statistics.median(ratios)
            batch = statistics.median(r["mean_batch"] for r in runs)
            server_cpu = statistics.median(r["server_cpu_ms_per_click"] for r in runs)
            client_cpu = statistics.median(r["client_cpu_ms_per_click"] for r in runs)
            spread = f"{ratio:.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            rows.append([f"server, batching {name}", n, p50, p99, p99 / p50, rate, batch, spread, server_cpu, client_cpu])
            summary[f"{name}_{n}"] = {"p50_ms": p50, "p99_ms": p99, "clicks_per_s": rate, "mean_batch": batch,
                                      "vs_library": ratio, "vs_library_per_rep": ratios, "server_cpu_ms_per_click": server_cpu,
                                      "client_cpu_ms_per_click": client_cpu, "cpu_vs_library": lib_cpu / server_cpu}
    print_table(f"sam2.1_hiera_tiny, ONNX Runtime CPU, {w}x{h} image, 1 click per request, multimask, format=rle "
                f"{args.client} client (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after)",
                ["path", "clients N", "p50 ms", "p99 ms", "p99/p50", "clicks/s", "mean batch", "vs library",
                 "CPU ms/click", "client CPU ms/click"], rows)
    write_json("server_cpu", {"image": [h, w], "clients": args.clients, "clicks": args.clicks, "reps": args.reps,
                              "window_ms": args.window_ms, "client": args.client,
                              "loadavg_before": load_before, "loadavg_after": load_after,
                              "summary": summary,
                              "raw": {k: {str(n): [{kk: vv for kk, vv in r.items() if kk != "latencies_ms"} for r in v]
                                          for n, v in d.items()} for k, d in results.items()}})


if __name__ == "__main__":
    main()
