"""Optional, slow, outside the default suite (SAM2EDGE_ARM64=1): the Jetson wheel set on a real aarch64 userland.

An arm64 Debian root filesystem (mmdebstrap --architectures=arm64) run under qemu-user through binfmt_misc, in a
chroot: a venv gets requirements/jetson.txt and PyPI's CPU onnxruntime (binary wheels only), sam2edge is
installed from this checkout, imported, and segments an image through the session's ONNX export; the mask is
compared with the host's. Debian has Python 3.11, not JetPack 6's 3.10, so this proves the aarch64 wheels
install and run (and that no marker-only dependency is missing), while test_wheels.py proves the 3.10 set
resolves. The pristine root filesystem is made once (mmdebstrap, 6-15 minutes on 2 shared cores) and kept as a
tarball (SAM2EDGE_ARM64_BASE, default /tmp/sam2edge-arm64-bookworm.tar); every run unpacks it, installs the
wheels under emulation and segments.

    apt-get install -y qemu-user-static binfmt-support mmdebstrap
    SAM2EDGE_ARM64=1 python3 -m pytest -q -s tests/deploy/test_arm64.py

Known state (last run, Nov 30, load ~10): the aarch64 wheels and sam2edge installed under qemu (~6 min); the
segmentation then aborted inside onnxruntime 1.23.2: in this chroot (no /sys or /proc mounted) cpuinfo fails,
ORT logs that before its default logger exists, and terminates. Not fixed yet: give the chroot a tmpfs
/sys/devices/system/cpu and /proc, or run the step in an arm64 container with --tmpfs /sys/devices/system/cpu
(RECIPES.md), and rerun.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.deploy.conftest import CA_BUNDLE, REPO, Deployed
from tests.deploy.test_image import host_prediction, iou, scene

pytestmark = pytest.mark.skipif(os.environ.get("SAM2EDGE_ARM64") != "1",
                                reason="optional arm64 emulation run, not in CI: ~15 min on 2 cores (mmdebstrap arm64 "
                                       "+ pip and ONNX Runtime under qemu) is over the deploy tests' 5-minute "
                                       "share; test_wheels checks the aarch64 Python 3.10 set resolves. Set SAM2EDGE_ARM64=1")

SEGMENT = """
import sys, time, numpy as np, cv2
from sam2edge import SAM2
model = SAM2.from_pretrained(sys.argv[1], backend="onnxruntime", device="cpu")
rgb = cv2.imread("/data/scene.png")[:, :, ::-1].copy()
t0 = time.time()
pred = model.segment_images(rgb, point_coordinates=np.array([[110, 120]], np.float32), point_labels=np.array([1]),
                            input_color_format="rgb")[0]
best = int(np.argmax(pred.scores))
np.save("/data/mask.npy", np.asarray(pred.masks[best], bool))
import platform, onnxruntime
print(platform.machine(), "python", platform.python_version(), "onnxruntime", onnxruntime.__version__,
      "backend", model.active_backend, "score", float(pred.scores[best]), "seconds", round(time.time() - t0, 1))
"""


BASE_TAR = Path(os.environ.get("SAM2EDGE_ARM64_BASE", "/tmp/sam2edge-arm64-bookworm.tar"))


def chroot(root: Path, *command: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "PIP_CERT": "/etc/host-ca.crt",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "LANG": "C.UTF-8"}
    r = subprocess.run([shutil.which("chroot") or "/usr/sbin/chroot", str(root), *command], capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert r.returncode == 0, f"{' '.join(command)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_jetson_wheels_install_and_segment_on_arm64(tmp_path: Path, deployed: Deployed):
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None:
        pytest.skip("needs root and mmdebstrap")
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.skip("qemu-aarch64 is not registered with binfmt_misc (qemu-user-static; update-binfmts --enable qemu-aarch64)")
    import cv2

    timings: dict[str, float] = {}
    root = tmp_path / "arm64"
    t0 = time.monotonic()
    if not BASE_TAR.is_file():  # the pristine root filesystem is kept, like the stand-in Docker base image
        partial = BASE_TAR.with_name(BASE_TAR.stem + ".partial.tar")  # mmdebstrap picks its format by the suffix
        r = subprocess.run(["mmdebstrap", "--quiet", "--architectures=arm64", "--variant=apt",
                            "--include=python3,python3-venv,ca-certificates", "bookworm", str(partial)],
                           capture_output=True, text=True, timeout=3600)
        assert r.returncode == 0, r.stderr[-3000:]
        partial.rename(BASE_TAR)
        timings["arm64 root filesystem (mmdebstrap, kept in " + str(BASE_TAR) + ")"] = time.monotonic() - t0
        t0 = time.monotonic()
    root.mkdir()
    subprocess.run(["tar", "-C", str(root), "-xf", str(BASE_TAR)], check=True, timeout=600)
    timings["unpacking the root filesystem"] = time.monotonic() - t0
    shutil.copy(CA_BUNDLE, root / "etc" / "host-ca.crt")
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "sam2edge", src / "sam2edge", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "requirements" / "jetson.txt", src / "jetson.txt")
    shutil.copytree(deployed.store, root / "data" / "store")
    cv2.imwrite(str(root / "data" / "scene.png"), scene()[:, :, ::-1])
    (root / "data" / "segment.py").write_text(SEGMENT)
    setup_text = (REPO / "jetson" / "setup.sh").read_text()
    cpu_ort = setup_text.split('ORT_CPU_SPEC="', 1)[1].split('"', 1)[0]

    assert chroot(root, "python3", "-c", "import platform; print(platform.machine())").stdout.strip() == "aarch64"
    t0 = time.monotonic()
    chroot(root, "python3", "-m", "venv", "/opt/venv")
    chroot(root, "/opt/venv/bin/pip", "install", "--no-cache-dir", "--only-binary=:all:", "-r", "/src/jetson.txt", cpu_ort)
    chroot(root, "/opt/venv/bin/pip", "install", "--no-cache-dir", "--no-deps", "/src")
    timings["venv + aarch64 wheels + sam2edge under qemu"] = time.monotonic() - t0
    t0 = time.monotonic()
    out = chroot(root, "/opt/venv/bin/python", "/data/segment.py", f"/data/store/{deployed.model_dir_name}").stdout
    timings["segmentation under qemu"] = time.monotonic() - t0

    theirs = np.load(root / "data" / "mask.npy")
    ours, score = host_prediction(deployed, scene(), 110, 120)
    print(out.strip())
    print(f"arm64 vs host: mask IoU {iou(theirs, ours):.5f}, host score {score:.5f}")
    for what, seconds in timings.items():
        print(f"{seconds:7.1f} s  {what}")
    assert out.startswith("aarch64 ") and "backend onnxruntime-cpu" in out
    assert iou(theirs, ours) > 0.99
