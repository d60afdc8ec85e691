"""docker/Dockerfile built on the stand-in base and run: what the image is, doctor, the device check, a
segmentation, and the server inside it over HTTP (Roboflow format, API key), all on the CPU.

The containers get the session's random-weight export mounted read-only (the image has no torch: it was
exported on the host) and its checkpoint in the models folder, so the variant name resolves to that export
exactly as on a deployed box. Results are compared with the host's own run of the same export.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from tests.deploy.conftest import TIMINGS, Deployed, Mounts, docker, remove, run, start

API_KEY = "ci-key-0123456789"


def scene() -> np.ndarray:
    """A 240x320 RGB image: two filled shapes on a gradient (deterministic)."""
    import cv2

    img = np.zeros((240, 320, 3), np.uint8)
    img[:] = np.linspace(20, 90, 320, dtype=np.uint8)[None, :, None]
    cv2.rectangle(img, (60, 50), (170, 190), (220, 60, 40), -1)
    cv2.circle(img, (245, 120), 45, (40, 200, 90), -1)
    return img


_HOST_MODELS: dict[str, object] = {}


def host_prediction(deployed: Deployed, rgb: np.ndarray, x: float, y: float):
    """The host's answer on the same export (ONNX Runtime on the CPU): the best of three masks and its score."""
    from sam2edge import SAM2

    key = str(deployed.onnx_dir)
    if key not in _HOST_MODELS:  # loaded once: the segment and server tests compare with the same model
        _HOST_MODELS[key] = SAM2.from_pretrained(str(deployed.onnx_dir.parent), backend="onnxruntime", device="cpu",
                                                 store_dir=str(deployed.store))
    model = _HOST_MODELS[key]
    pred = model.segment_images(rgb, point_coordinates=np.array([[x, y]], np.float32), point_labels=np.array([1]),
                                input_color_format="rgb")[0]
    best = int(np.argmax(pred.scores))
    return np.asarray(pred.masks[best], bool), float(pred.scores[best])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_image_is_non_root_runtime_only_and_has_no_engines(image):
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "10001"
    assert set(config["Volumes"]) == {"/data/models", "/data/engines"}
    assert config["Entrypoint"] == ["sam2edge-appliance"] and config["Cmd"] == ["serve"]
    assert config["Healthcheck"]["Test"] == ["CMD", "sam2edge-appliance", "healthcheck"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["SAM2EDGE_STORE"] == "/data/engines" and env["SAM2EDGE_MODELS_DIR"] == "/data/models"
    probe = run(image, "bash", "-c", "id -u; id -Gn; python3 -c 'import importlib.util as u; print(u.find_spec(\"torch\"))'; "
                "find / -xdev \\( -name '*.engine' -o -name '*.plan' -o -name '*.onnx' -o -name '*.pt' \\) "
                "-not -path '*/site-packages/onnxruntime/datasets/*' | head -5")
    lines = probe.stdout.split("\n")
    assert probe.returncode == 0, probe.output
    assert lines[0] == "10001" and "video" in lines[1].split(), lines
    assert lines[2] == "None", "EXPORTER=none must leave torch out of the image"
    assert lines[3:] == [""], f"artifacts baked into the image: {lines[3:]}"


# One container runs these one after the other: a container start, the imports and a model load cost seconds
# each on a loaded 2-core CI box. `test` prints `sam2edge doctor` first.
CHECKS = {
    "test": "sam2edge-appliance test --cpu-ok",
    "models": "sam2edge-appliance models",
    "segment": "sam2edge-appliance segment /io/in.png --point 110,120 --multimask --out /io/mask.png --json",
}


@pytest.fixture(scope="module")
def checks(image, deployed, tmp_path_factory) -> tuple[dict[str, tuple[int, str]], Path]:
    """{check: (exit code, stdout)} of CHECKS run in one container with the session's export mounted, and the
    folder mounted at /io (the segmentation's input and mask)."""
    import cv2

    io = tmp_path_factory.mktemp("io")
    io.chmod(0o777)  # the container's user is uid 10001
    cv2.imwrite(str(io / "in.png"), scene()[:, :, ::-1])
    script = "; ".join(f'echo "=== {name}"; {command}; echo "=== {name} exit $?"' for name, command in CHECKS.items())
    mounts = deployed.mounts()
    mounts.volumes.append((io, "/io", False))
    r = run(image, "bash", "-c", script, mounts=mounts, timeout=300)
    TIMINGS["check container: test, models, segment"] = r.seconds
    assert r.returncode == 0, r.output
    out = {}
    for name in CHECKS:
        body, rest = r.stdout.split(f"=== {name}\n", 1)[1].split(f"=== {name} exit ", 1)
        out[name] = (int(rest.split("\n", 1)[0]), body)
        print(f"--- {name}\n{body}")
    assert all(code == 0 for code, _ in out.values()), f"{ {k: c for k, (c, _) in out.items()} }\n{r.output}"
    return out, io


def test_doctor_in_the_image_sees_the_mounted_export(checks):
    doctor = checks[0]["test"][1]
    assert "ONNX Runtime: 1.26.0" in doctor  # the GPU build (requirements/docker.txt), here on the CPU
    assert "TensorRT: not installed" in doctor and "GPU: none" in doctor
    assert "auto backend for sam2.1_hiera_tiny (batch 1): onnxruntime-cpu on cpu" in doctor


def test_device_check_passes_on_the_cpu(checks, deployed):
    out = checks[0]["test"][1]
    assert f"store /data/engines\n  {deployed.model_dir_name}: ONNX export" in out
    assert f"segmentation: {deployed.model_dir_name} on onnxruntime-cpu" in out
    assert "note: no CUDA GPU visible" in out and "(allowed by --cpu-ok)" in out
    assert out.rstrip().endswith("sam2edge OK")


def test_models_lists_the_checkpoint_volume_and_the_export(checks, deployed):
    models = checks[0]["models"][1]
    # the checkpoint volume is $SAM2EDGE_MODELS_DIR (listed once: the download cache is a folder below it)
    assert models.count("/data/models/sam2.1_hiera_tiny.pt") == 1, models
    assert "download cache ($SAM2EDGE_CACHE): /data/models/cache" in models
    assert f"export: {deployed.model_dir_name} (ONNX, from another checkpoint" in models  # random weights


def test_segment_in_the_image_matches_the_host(checks, deployed):
    import cv2

    results, io = checks
    report = json.loads(results["segment"][1].strip().splitlines()[-1])
    theirs = cv2.imread(str(io / "mask.png"), cv2.IMREAD_GRAYSCALE) > 127
    ours, score = host_prediction(deployed, scene(), 110, 120)
    overlap = iou(theirs, ours)
    print(f"container vs host: mask IoU {overlap:.5f}, score {report['scores'][report['best']]:.5f} vs {score:.5f} "
          f"({report['backend']}; ONNX Runtime 1.26 in the image)")
    assert report["backend"] == "onnxruntime-cpu" and theirs.shape == scene().shape[:2]
    assert overlap > 0.99 and abs(report["scores"][report["best"]] - score) < 1e-3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(base: str, container: str, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        state = docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
        if state != "true":
            logs = docker("logs", container, check=False)
            raise AssertionError(f"the server container exited:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.5)
    raise AssertionError(f"{base}/readyz not 200 after {timeout} s")


def test_server_in_the_image_answers_roboflow_requests_with_the_key(image, deployed):
    httpx = pytest.importorskip("httpx")
    from sam2edge.server.encoding import rle_decode

    port = free_port()
    mounts = deployed.mounts(SAM2EDGE_HOST="127.0.0.1", SAM2EDGE_PORT=str(port), SAM2EDGE_API_KEY=API_KEY)
    t0 = time.monotonic()
    container = start(image, ["serve", "--log-level", "warning"], mounts, network="host")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, container)
        TIMINGS["server container: start to /readyz"] = time.monotonic() - t0
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        assert docker("exec", container, "sam2edge-appliance", "healthcheck", check=False).returncode == 0

        import cv2

        rgb = scene()
        png = base64.b64encode(cv2.imencode(".png", rgb[:, :, ::-1])[1].tobytes()).decode()
        body = {"image": {"type": "base64", "value": png}, "format": "rle",
                "prompts": [{"points": [{"x": 110, "y": 120, "positive": True}]}]}
        refused = httpx.post(f"{base}/sam2/segment_image", json=body, timeout=60)
        assert refused.status_code == 401, refused.text
        r = httpx.post(f"{base}/sam2/segment_image", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120)
        assert r.status_code == 200, r.text
        (prediction,) = r.json()["predictions"]
        mask = rle_decode(prediction["masks"])
        ours, score = host_prediction(deployed, rgb, 110, 120)
        print(f"server in the container vs host: mask IoU {iou(mask, ours):.5f}, confidence {prediction['confidence']:.5f} "
              f"vs {score:.5f}")
        assert mask.shape == rgb.shape[:2] and iou(mask, ours) > 0.99

        logs = docker("logs", container).stderr
        assert f"-> export /data/engines/{deployed.model_dir_name}/onnx" in logs, logs
        assert "engines: none for this machine: no CUDA GPU visible" in logs, logs
        assert API_KEY not in logs  # the key is passed as a file, never echoed
        t0 = time.monotonic()
        docker("stop", "-t", "20", container, timeout=60)
        stopped = time.monotonic() - t0
        code = docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip()
        print(f"docker stop: {stopped:.1f} s, exit code {code}")
        assert stopped < 15, "the server (PID 1 after exec) must stop on SIGTERM, not wait for SIGKILL"
    finally:
        remove(container)


def test_serving_on_all_interfaces_without_a_key_is_refused(image):
    r = run(image, timeout=60)
    assert r.returncode == 1
    assert "listening on 0.0.0.0 needs an API key" in r.stderr and "/run/secrets/sam2edge_api_key" in r.stderr


def test_a_model_without_export_and_without_exporter_says_how_to_export(image, tmp_path):
    empty = tmp_path / "store"
    empty.mkdir(mode=0o777)
    empty.chmod(0o777)
    r = run(image, mounts=Mounts([(empty, "/data/engines", False)], {"SAM2EDGE_API_KEY": API_KEY}), timeout=60)
    assert r.returncode == 1
    assert "no exporter (PyTorch)" in r.stderr and "sam2edge export sam2.1_hiera_tiny --store DIR" in r.stderr
