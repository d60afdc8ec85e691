"""Scale-out on this CPU: clicks through Triton with dynamic batching on and off, and Ray labelling with 1 vs 2 actors.

    python benchmarks/scale_cpu.py --onnx DIR [--clients 1 4 16] [--clicks 48] [--encodes 4] [--reps 2] [--ray-images 6]

DIR is an exported sam2.1_hiera_tiny folder; without ``--onnx`` a random-weight checkpoint is exported first
(minutes). Needs the Triton venv (``scripts/triton_venv.sh``) and ray.

Triton: ONE tritonserver on 127.0.0.1 serves two Python-platform repositories of the same export side by side
(prefix ``on``: the image encoder dynamically batched; prefix ``off``: no dynamic batching; one instance per
model, ONNX Runtime with 2 threads), so configurations interleave without restarts. For N clients, N threads,
each with its own ``AutoModel.from_pretrained("triton://...")`` and its own image embedded once (embeddings stay
in the caller's cache), click (one positive point, multimask) until ``--clicks`` clicks are answered: clicks/s
and p50/p99 latency. Then N clients encode ``--encodes`` images in all (N in 1 and 4, first rep only): encodes/s. The local
figure is the same click on ONNX Runtime in this process. Reps interleave (local, on, off per N); tables show
medians over reps.

Ray: ``--ray-images`` images labelled with one prompt each on a local cluster (2 CPUs, 256 MB object store), an
actor pool of 1 and of 2 actors (1 CPU, 1 ONNX Runtime thread each), end to end (actor start and model load
included) and per image once the pool runs; and the single-process path (2 threads) for reference.

The load average before and after is recorded: the machine may be shared. Writes benchmarks/results/scale_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import print_table, time_it, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def feature_bytes() -> dict[str, int]:
    """Bytes a click and an encode move over the wire, from the specs (fp32, one image, one prompt of one point)."""
    from sam2edge.contract.artifacts import ARTIFACTS, Artifact, Tensor

    def size(t, overrides) -> int:
        return int(np.prod(t.shape_at("min", overrides))) * 4

    dec, enc = ARTIFACTS[Artifact.PROMPT_DECODER], ARTIFACTS[Artifact.IMAGE_ENCODER]
    ones = {d: 1 for d in dec.dims()}
    sent = sum(size(t, ones) for t in dec.inputs)
    back = sum(size(t, ones) for t in dec.outputs)
    features = sum(size(t, ones) for t in dec.inputs if t.name in (Tensor.IMAGE_EMBED, Tensor.HIGH_RES_0, Tensor.HIGH_RES_1))
    enc_sent = sum(size(t, {"batch": 1}) for t in enc.inputs)
    enc_back = sum(size(t, {"batch": 1}) for t in enc.outputs)
    return {"click_sent": sent, "click_received": back, "click_features": features, "encode_sent": enc_sent,
            "encode_received": enc_back}


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    from tests.video.clip import make_clip

    return [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in make_clip(num_frames=n, height=360, width=480, seed=seed).frames]


def run_clients(n: int, work, total: int) -> dict[str, float]:
    """n threads share ``total`` calls of ``work(client)``; calls/s over the wall time, latency p50/p99 (ms)."""
    lock, latencies, counter = threading.Lock(), [], [0]

    def client(i: int) -> None:
        while True:
            with lock:
                if counter[0] >= total:
                    return
                counter[0] += 1
            t0 = time.perf_counter()
            work(i)
            with lock:
                latencies.append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"per_s": len(lat) / wall, "p50_ms": statistics.median(lat), "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))]}


def triton_part(onnx: Path, args, work_dir: Path) -> dict:
    from sam2edge import AutoModel
    from sam2edge.scale.triton_config import Serving
    from sam2edge.scale.triton_repo import write_repository
    from tests.scale.triton_server import start_triton

    repo = work_dir / "repo"
    names = []
    for prefix, batching in (("on", True), ("off", False)):
        written = write_repository(onnx, repo, "python", Serving(kind="cpu", dynamic_batching=batching), prefix=prefix,
                                   threads=2)
        names += [w.name for w in written]
    server = start_triton(repo, work_dir / "tritonserver.log", models=tuple(names))
    print(f"tritonserver ready in {server.started_s:.1f} s", flush=True)
    try:
        local = AutoModel.from_pretrained(str(onnx), backend="onnxruntime", device="cpu", threads=2)
        pics = images(max(args.clients) + args.encodes, seed=1)
        point = {"point_coordinates": np.array([[240.0, 180.0]], np.float32), "point_labels": np.array([1], np.int32),
                 "multi_mask_output": True}
        local_emb = local.embed_images(pics[0])[0]
        clicks: dict[str, dict[int, list[dict]]] = {"local": {}, "on": {}, "off": {}}
        encodes: dict[str, dict[int, list[dict]]] = {"on": {}, "off": {}}
        clients = {n: {p: [AutoModel.from_pretrained(server.url(p)) for _ in range(n)] for p in ("on", "off")}
                   for n in args.clients}
        # One cached embedding per configuration, shared by its clients: every click carries its own copy of
        # the features to the server anyway, and the decoder's cost does not depend on the image.
        embedded = {p: clients[args.clients[0]][p][0].embed_images(pics[0])[0] for p in ("on", "off")}
        for rep in range(args.reps):
            for n in args.clients:
                t = time_it(lambda: local.segment_images(embeddings=local_emb, **point), runs=5, warmup=1)
                clicks["local"].setdefault(n, []).append({"per_s": 1e3 / t["median_ms"], "p50_ms": t["median_ms"],
                                                          "p99_ms": t["max_ms"]})
                for p in ("on", "off"):
                    models = clients[n][p]
                    r = run_clients(n, lambda i, m=models, e=embedded[p]: m[i].segment_images(embeddings=e, **point),
                                    max(args.clicks, 2 * n))
                    clicks[p].setdefault(n, []).append(r)
                    print(f"rep {rep} clicks {p:>3} x{n:<2}: {r['per_s']:.2f}/s p50 {r['p50_ms']:.0f} ms", flush=True)
            for n in [c for c in args.clients if c <= 4 and rep == 0]:  # encodes are slow here: one rep
                for p in ("on", "off"):
                    models = clients[n][p]
                    r = run_clients(n, lambda i, m=models: m[i].embed_images(pics[max(args.clients) + i % args.encodes],
                                                                              use_embeddings_cache=False), args.encodes)
                    encodes[p].setdefault(n, []).append(r)
                    print(f"rep {rep} encodes {p:>3} x{n}: {r['per_s']:.2f}/s", flush=True)
        stats = {p: _batch_sizes(server, p) for p in ("on", "off")}
    finally:
        server.stop()
    return {"clicks": _medians(clicks), "encodes": _medians(encodes), "encoder_batch_sizes": stats,
            "server_start_s": server.started_s}


def _batch_sizes(server, prefix: str) -> dict[int, int]:
    import tritonclient.grpc as grpcclient

    from sam2edge.contract.artifacts import Artifact
    from sam2edge.contract.serving import model_name

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.port}")
    stats = client.get_inference_statistics(model_name(prefix, Artifact.IMAGE_ENCODER), as_json=True)
    return {int(r["batch_size"]): int(r["compute_infer"]["count"]) for r in stats["model_stats"][0].get("batch_stats", [])}


def _medians(table: dict[str, dict[int, list[dict]]]) -> dict[str, dict[int, dict[str, float]]]:
    return {k: {n: {m: statistics.median(r[m] for r in runs) for m in runs[0]} for n, runs in v.items()} for k, v in table.items()}


def ray_part(onnx: Path, args, work_dir: Path) -> dict:
    import ray

    from sam2edge.scale.labels import ModelRequest
    from sam2edge.scale.ray_label import Cluster, Workers, label_images, label_images_local

    folder = work_dir / "ray_images"
    folder.mkdir()
    jobs = []
    for i, img in enumerate(images(args.ray_images, seed=2)):
        cv2.imwrite(str(folder / f"{i}.png"), img)
        jobs.append({"id": i + 1, "file_name": f"{i}.png", "path": str(folder / f"{i}.png"),
                     "prompts": [{"points": [[240.0, 180.0]], "labels": [1]}]})
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    t0 = time.perf_counter()
    Cluster(num_cpus=2, object_store_mb=256, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}}).connect()
    out = {"cluster_start_s": time.perf_counter() - t0}
    try:
        for actors in (1, 2):
            request = ModelRequest(str(onnx), backend="onnxruntime", device="cpu", threads=1, strict=True)
            stamps: list[float] = []
            t0 = time.perf_counter()
            label_images(jobs, request, Workers(actors=actors), progress=lambda d, t, s=stamps: s.append(time.perf_counter()))
            wall = time.perf_counter() - t0
            steady = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
            out[f"actors_{actors}"] = {"images_per_s": len(jobs) / wall, "wall_s": wall, "first_result_s": stamps[0] - t0,
                                       "steady_images_per_s": steady}
            print(f"ray {actors} actor(s): {len(jobs) / wall:.3f} images/s end to end, {steady:.3f}/s steady", flush=True)
    finally:
        ray.shutdown()
    t0 = time.perf_counter()
    label_images_local(jobs, ModelRequest(str(onnx), backend="onnxruntime", device="cpu", threads=2, strict=True))
    wall = time.perf_counter() - t0
    out["one_process"] = {"images_per_s": len(jobs) / wall, "wall_s": wall}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", type=Path, default=None)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--clicks", type=int, default=48)
    ap.add_argument("--encodes", type=int, default=4)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--ray-images", type=int, default=6)
    args = ap.parse_args()
    load_before = os.getloadavg()
    if args.onnx is None:
        from benchmarks.server_cpu import export_random

        args.onnx = export_random()
    work_dir = Path(tempfile.mkdtemp(prefix="sam2edge-scale-"))
    triton = triton_part(args.onnx, args, work_dir)
    ray_result = ray_part(args.onnx, args, work_dir)
    load_after = os.getloadavg()
    wire = feature_bytes()
    rows = []
    for n in args.clients:
        c = triton["clicks"]
        rows.append([n, c["local"][n]["per_s"], c["on"][n]["per_s"], c["off"][n]["per_s"], c["on"][n]["p50_ms"],
                     c["off"][n]["p50_ms"], c["on"][n]["p99_ms"], c["off"][n]["p99_ms"]])
    print_table("clicks/s through Triton (decoder on a cached embedding; Python backend, ONNX Runtime CPU, 1 instance)",
                ["clients", "local 1 call", "batching on", "off", "p50 on ms", "p50 off ms", "p99 on ms", "p99 off ms"], rows)
    print_table("encodes/s through Triton (image encoder, the only dynamically batched model)",
                ["clients", "batching on", "off"],
                [[n, triton["encodes"]["on"][n]["per_s"], triton["encodes"]["off"][n]["per_s"]] for n in triton["encodes"]["on"]])
    print(f"  encoder batch sizes executed: on {triton['encoder_batch_sizes']['on']}, off {triton['encoder_batch_sizes']['off']}")
    r = ray_result
    print_table(f"Ray labelling, {args.ray_images} images x 1 prompt (local cluster: 2 CPUs, 1 thread per actor)",
                ["workers", "images/s end to end", "steady images/s", "first result s"],
                [["1 actor", r["actors_1"]["images_per_s"], r["actors_1"]["steady_images_per_s"], r["actors_1"]["first_result_s"]],
                 ["2 actors", r["actors_2"]["images_per_s"], r["actors_2"]["steady_images_per_s"], r["actors_2"]["first_result_s"]],
                 ["one process (2 threads)", r["one_process"]["images_per_s"], "", ""]])
    mb = {k: v / 1e6 for k, v in wire.items()}
    print(f"\nwire per click: {mb['click_sent']:.1f} MB sent ({mb['click_features']:.1f} MB of cached features), "
          f"{mb['click_received']:.1f} MB back; per encode {mb['encode_sent']:.1f} MB sent, {mb['encode_received']:.1f} MB back")
    print(f"load average before {load_before}, after {load_after}")
    write_json("scale_cpu", {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                             "triton": triton, "ray": ray_result, "wire_bytes": wire,
                             "loadavg_before": load_before, "loadavg_after": load_after})


if __name__ == "__main__":
    main()
