"""The images' and the Jetson set-up's Python steps resolve as wheels for their platforms (PyPI, no build).

``pip install --dry-run --report --only-binary=:all: --platform ... --python-version ...`` with the manylinux
tags listed explicitly (pip does not expand them), against PyPI itself (``--isolated``: no local wheel folders
or indexes). The report names the wheel file pip picked for each package; pip reads the wheels' metadata
(PyPI serves it beside each wheel) instead of downloading them: seconds instead of a ``pip download`` of both
sets' 200 MB. Each requirements file must be a complete lock: what pip resolves is exactly what it pins.
pip evaluates environment markers for the interpreter running it, not the target, so dependencies that only
older Pythons need (exceptiongroup on 3.10) are pinned by hand and covered by the optional arm64 run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy.conftest import CA_BUNDLE, REPO, missing

AARCH64 = ("manylinux_2_35_aarch64", "manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux_2_27_aarch64",
           "manylinux_2_17_aarch64", "manylinux2014_aarch64")  # JetPack 6 is Ubuntu 22.04: glibc 2.35
X86_64 = ("manylinux_2_39_x86_64", "manylinux_2_35_x86_64", "manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
          "manylinux_2_17_x86_64", "manylinux2014_x86_64")  # Ubuntu 24.04 (glibc 2.39) and Debian 12 bases


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            if canonical(name) not in skip:
                out[canonical(name)] = version
    return out


def pip(command: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    options = ["--isolated", "--disable-pip-version-check", "--index-url", "https://pypi.org/simple"]
    if Path(CA_BUNDLE).exists():
        options += ["--cert", CA_BUNDLE]
    return subprocess.run([sys.executable, "-m", "pip", command, *options, *args], capture_output=True, text=True, timeout=timeout)


def target(python: str, platforms: tuple[str, ...]) -> list[str]:
    return ["--only-binary=:all:", "--python-version", python, *[a for p in platforms for a in ("--platform", p)]]


def resolve(requirements: dict[str, str], python: str, platforms: tuple[str, ...], dest: Path) -> dict[str, str] | str:
    """What pip would install for the pins (with their dependencies) on the target: {name: version}, or pip's
    error text when they do not resolve as wheels. Every picked file must be a wheel (no sdist to build)."""
    t0 = time.monotonic()
    report = dest / "report.json"
    r = pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), "--target", str(dest / "t"),
            *target(python, platforms), *[f"{n}=={v}" for n, v in requirements.items()])
    if r.returncode != 0:
        return f"not resolvable as wheels for Python {python} {platforms[0]}:\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
    got = {}
    for item in json.loads(report.read_text())["install"]:
        filename = item["download_info"]["url"].rsplit("/", 1)[-1]
        if not filename.endswith(".whl"):
            return f"{filename}: not a wheel for Python {python} {platforms[0]}"
        got[canonical(item["metadata"]["name"])] = item["metadata"]["version"]
    print(f"{len(got)} wheels for Python {python} {platforms[0]} in {time.monotonic() - t0:.1f} s")
    return got


def available(package: str, python: str, platforms: tuple[str, ...]) -> list[str]:
    r = pip("index", "versions", package, *target(python, platforms), timeout=120)
    match = re.search(r"Available versions: (.*)", r.stdout)
    return match.group(1).split(", ") if r.returncode == 0 and match else []


JETSON = pins(REPO / "requirements" / "jetson.txt")
# The image's runtime and exporter pins, less the 250 MB GPU ONNX Runtime wheel (only looked up) and torch (the
# PyTorch CPU index, not PyPI).
IMAGE = {**pins(REPO / "requirements" / "docker.txt", skip=("onnxruntime-gpu",)), **pins(REPO / "requirements" / "docker-export.txt")}
IMAGE_ORT = pins(REPO / "requirements" / "docker.txt")["onnxruntime-gpu"]
CPU_ORT = re.search(r'ORT_CPU_SPEC="onnxruntime==([0-9.]+)"', (REPO / "jetson" / "setup.sh").read_text()).group(1)


@pytest.fixture(scope="module")
def pypi_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Every question for PyPI at once (they are network-bound): two resolutions and four version lists."""
    try:
        reachable = pip("index", "versions", "pip", timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        reachable = False
    if not reachable:
        missing("PyPI is not reachable: the wheel checks ask it which wheels exist")
    jobs = {
        "jetson": (resolve, JETSON, "3.10", AARCH64, tmp_path_factory.mktemp("jetson-wheels")),
        "image": (resolve, IMAGE, "3.12", X86_64, tmp_path_factory.mktemp("image-wheels")),
        "ort-gpu-aarch64": (available, "onnxruntime-gpu", "3.10", AARCH64),
        "ort-cpu-aarch64": (available, "onnxruntime", "3.10", AARCH64),
        "ort-gpu-py312": (available, "onnxruntime-gpu", "3.12", X86_64),
        "ort-gpu-py311": (available, "onnxruntime-gpu", "3.11", X86_64),
    }
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {key: pool.submit(fn, *args) for key, (fn, *args) in jobs.items()}
        return {key: future.result() for key, future in futures.items()}


def check_lock(got: dict[str, str] | str, wanted: dict[str, str]) -> None:
    assert isinstance(got, dict), got
    assert got == {**got, **wanted}, f"a pinned version did not come: {sorted(set(wanted.items()) - set(got.items()))}"
    assert set(got) <= set(wanted), f"unpinned dependencies: {sorted(set(got) - set(wanted))}"


def test_jetson_requirements_resolve_as_aarch64_python310_wheels(pypi_answers):
    check_lock(pypi_answers["jetson"], JETSON)


def test_onnxruntime_for_jetson_the_gpu_build_is_not_on_pypi_the_cpu_fallback_is(pypi_answers):
    assert pypi_answers["ort-gpu-aarch64"] == [], "PyPI has aarch64 GPU builds now: revisit ORT_INDEX_URL"
    assert CPU_ORT in pypi_answers["ort-cpu-aarch64"]


def test_x86_image_requirements_resolve_for_the_nvidia_base_python312(pypi_answers):
    """Python 3.12 is the TensorRT base image's; 3.11 is checked by really building the image on the stand-in
    base (tests/deploy/test_image.py)."""
    check_lock(pypi_answers["image"], IMAGE)
    assert IMAGE_ORT in pypi_answers["ort-gpu-py312"] and IMAGE_ORT in pypi_answers["ort-gpu-py311"]
