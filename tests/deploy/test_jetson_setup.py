"""jetson/setup.sh on recorded boards: a fake root (SAM2EDGE_SYSROOT) holds the files a Jetson has
(/etc/nv_tegra_release, /proc/meminfo, /proc/swaps, the device-tree model) and a fake nvpmodel is on PATH.
The release check refuses what is unsupported with a clear message; memory and power mode give
recommendations and change nothing; bad options are usage errors; --dry-run walks the whole install and prints
each change instead of making it. What runs only on a real JetPack host (the venv seeing JetPack's TensorRT,
the community index's GPU ONNX Runtime wheel, swap, nvpmodel, systemd) is covered by these printed commands,
not executed."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO

SETUP = REPO / "jetson" / "setup.sh"
ORIN_NANO_RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025"


def board(root: Path, release: str | None = ORIN_NANO_RELEASE, model: str = "NVIDIA Jetson Orin Nano Engineering Reference "
          "Developer Kit Super", mem_kib: int = 7_802_820, swaps: tuple[tuple[str, int], ...] = (("/dev/zram0", 650_348),),
          power: str = "15W") -> dict[str, str]:
    """Write a board's files under ``root``; the environment that points setup.sh at them."""
    (root / "etc").mkdir(parents=True)
    (root / "proc" / "device-tree").mkdir(parents=True)
    (root / "bin").mkdir()
    if release is not None:
        (root / "etc" / "nv_tegra_release").write_text(release + "\n")
    (root / "proc" / "device-tree" / "model").write_bytes(model.encode() + b"\0")
    swap_kib = sum(size for _, size in swaps)
    (root / "proc" / "meminfo").write_text(f"MemTotal: {mem_kib} kB\nMemAvailable: {mem_kib // 2} kB\nSwapTotal: {swap_kib} kB\n")
    (root / "proc" / "swaps").write_text("Filename Type Size Used Priority\n"
                                         + "".join(f"{name} partition {size} 0 5\n" for name, size in swaps))
    nvpmodel = root / "bin" / "nvpmodel"
    nvpmodel.write_text(f"#!/bin/sh\necho 'NV Power Mode: {power}'\necho 0\n")
    nvpmodel.chmod(0o755)
    return {"SAM2EDGE_SYSROOT": str(root), "PATH": f"{root / 'bin'}:{os.environ['PATH']}"}


def setup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env})


def test_orin_nano_on_jetpack_62_is_accepted_with_recommendations_and_nothing_changed(tmp_path):
    prefix = tmp_path / "prefix"
    r = setup(board(tmp_path / "root"), "--check", "--prefix", str(prefix))
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    assert "L4T: 36.4.3 (JetPack 6.2)" in r.stdout and "board: NVIDIA Jetson Orin Nano" in r.stdout
    assert "recommend: at least 4 GiB of swap on disk" in r.stdout and "--add-swap 8" in r.stdout
    assert "zram swap is compressed RAM" in r.stdout
    assert "power mode: 15W" in r.stdout and "recommend: the highest power mode" in r.stdout
    assert r.stdout.rstrip().endswith("check only: nothing was changed") and not prefix.exists()


def test_agx_orin_with_disk_swap_at_maxn_gets_no_recommendations(tmp_path):
    env = board(tmp_path / "root", ORIN_NANO_RELEASE.replace("4.3", "4.4"), "NVIDIA Jetson AGX Orin Developer Kit",
                mem_kib=64 * 2**20, swaps=(("/swapfile", 8 * 2**20),), power="MAXN")
    r = setup(env, "--check")
    assert r.returncode == 0 and "L4T: 36.4.4 (JetPack 6.2.1)" in r.stdout
    assert "recommend:" not in r.stdout


@pytest.mark.parametrize("release, message", [
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64", "JetPack 5 ships Python 3.8"),
    ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64", "ships TensorRT 8.6 and CUDA 12.2"),
    ("# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic, EABI: aarch64", "JetPack 7 brings"),
    (None, "this is not a Jetson with L4T"),
], ids=["jetpack5", "jetpack6.0", "jetpack7", "not-a-jetson"])
def test_unsupported_releases_are_refused_with_the_reason(tmp_path, release, message):
    r = setup(board(tmp_path / "root", release), "--check")
    assert r.returncode == 3 and message in r.stderr, r.stderr
    assert "recommend:" not in r.stdout  # refused before anything else


def test_allow_unsupported_goes_on_with_a_warning(tmp_path):
    env = board(tmp_path / "root", "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64")
    r = setup(env, "--check", "--allow-unsupported")
    assert r.returncode == 0 and "warning: L4T R36.3.0 (JetPack 6.0)" in r.stdout


def test_installing_needs_python_310_and_refuses_before_changing_anything(tmp_path):
    fake_python = tmp_path / "root" / "bin" / "python3"
    env = board(tmp_path / "root")
    fake_python.write_text("#!/bin/sh\necho 3.12\n")
    fake_python.chmod(0o755)
    prefix = tmp_path / "prefix"
    r = setup(env, "--prefix", str(prefix))
    assert r.returncode == 1 and "python3 is 3.12" in r.stderr and not prefix.exists()


@pytest.mark.parametrize("args", [["--add-swap", "lots"], ["--power-mode", "max"], ["--frobnicate"]])
def test_bad_options_are_usage_errors(tmp_path, args):
    r = setup(board(tmp_path / "root"), "--check", *args)
    assert r.returncode == 2 and r.stderr.startswith("setup.sh: ")


def jetpack_python(root: Path) -> None:
    """A stand-in python3 on PATH answering as JetPack 6's: Python 3.10 with TensorRT 10.3 importable."""
    fake = root / "bin" / "python3"
    fake.write_text('#!/bin/sh\ncase "$*" in *tensorrt.__version__*) echo 10.3.0 ;; *tensorrt*) ;; '
                    '*secrets*) echo 0123456789abcdef ;; *) echo 3.10 ;; esac\n')
    fake.chmod(0o755)


def would_run(stdout: str) -> list[list[str]]:
    return [shlex.split(line.removeprefix("would run:")) for line in stdout.splitlines() if line.startswith("would run:")]


def test_dry_run_prints_the_whole_install_and_changes_nothing(tmp_path):
    env = board(tmp_path / "root")
    jetpack_python(tmp_path / "root")
    prefix = tmp_path / "prefix"
    r = setup(env, "--dry-run", "--prefix", str(prefix), "--add-swap", "8", "--power-mode", "0", "--install-service")
    print(r.stdout)
    assert r.returncode == 0, r.stderr
    commands = would_run(r.stdout)
    pip = str(prefix / "venv" / "bin" / "pip")
    expected = [
        ["python3", "-m", "venv", "--system-site-packages", str(prefix / "venv")],
        [pip, "install", "--no-cache-dir", "-r", str(REPO / "requirements" / "jetson.txt")],
        [pip, "install", "--no-cache-dir", "--extra-index-url", "https://pypi.jetson-ai-lab.io/jp6/cu126", "-c",
         str(REPO / "requirements" / "jetson.txt"), "onnxruntime-gpu>=1.20,<1.27"],
        [pip, "install", "--no-cache-dir", "--no-deps", str(REPO)],
        ["install", "-m", "0755", str(REPO / "docker" / "entrypoint.sh"), str(prefix / "bin" / "sam2edge-appliance")],
        ["fallocate", "-l", "8G", "/swapfile"], ["swapon", "/swapfile"],
        ["nvpmodel", "-m", "0"],
        ["systemctl", "enable", "--now", "sam2edge.service"],
    ]
    positions = [commands.index(c) for c in expected]  # ValueError names a missing command
    assert positions == sorted(positions), "install, then swap, power mode and the service, in that order"
    assert "TensorRT: 10.3.0 (JetPack's Python bindings)" in r.stdout
    for line in ("would write: /etc/fstab (append)", "would write: /etc/sam2edge/api_key (0640)",
                 "would write: /etc/systemd/system/sam2edge.service (0644)"):
        assert line in r.stdout.splitlines(), line
    assert "MemoryMax=5714M" in r.stdout  # three quarters of the board's 7.4 GiB
    assert r.stdout.rstrip().endswith("dry run: nothing was changed") and not prefix.exists()


def test_dry_run_with_the_cpu_onnxruntime_takes_it_from_pypi(tmp_path):
    env = board(tmp_path / "root")
    jetpack_python(tmp_path / "root")
    r = setup(env, "--dry-run", "--cpu-onnxruntime", "--prefix", str(tmp_path / "prefix"))
    assert r.returncode == 0, r.stderr
    ort = [c for c in would_run(r.stdout) if any(a.startswith("onnxruntime") for a in c)]
    assert ort == [[str(tmp_path / "prefix" / "venv" / "bin" / "pip"), "install", "--no-cache-dir", "-c",
                    str(REPO / "requirements" / "jetson.txt"), "onnxruntime==1.23.2"]]
    assert not any("fallocate" in c or "systemctl" in c[0] for c in would_run(r.stdout)), "no flag, no change"
