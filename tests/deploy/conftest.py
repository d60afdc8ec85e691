"""The deployable images, built and run here: Docker helpers and the session's x86 image.

No registry image can be pulled here and there is no GPU, so docker/Dockerfile is built once per session on a
stand-in base made from Debian packages (mmdebstrap bookworm + python3-venv, ``docker import``) with
EXPORTER=none (the image then has no torch, like a runtime-only deployment), and run on the CPU.

Without a Docker daemon (``/usr/bin/docker info`` fails) the image tests skip with the reason; .ci/run installs
docker.io, starts dockerd and sets SAM2EDGE_REQUIRE_DEPLOY_TOOLS=1, which turns every such skip into a failure.
Debian's client /usr/bin/docker is used on purpose: another ``docker`` on PATH may lack BuildKit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKER = "/usr/bin/docker"
IMAGE_TAG = "sam2edge:ci"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
REQUIRE_ENV = "SAM2EDGE_REQUIRE_DEPLOY_TOOLS"

TIMINGS: dict[str, float] = {}  # what the Docker part of the suite costs, printed at the end of the run


def missing(reason: str) -> None:
    """Skip (locally) or fail (in CI, where .ci/run provides every tool) for a missing tool."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1: CI must provide it)")
    pytest.skip(reason)


def docker_problem() -> str | None:
    """Why the Docker daemon cannot be used here (None when it can)."""
    if not os.path.exists(DOCKER):
        return f"no Docker client at {DOCKER} (apt-get install docker.io)"
    try:
        r = subprocess.run([DOCKER, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 30 s"
    if r.returncode != 0:
        return f"no Docker daemon ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'docker info failed'})"
    return None


def docker(*args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "DOCKER_BUILDKIT": "1", **(env or {})})
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} ... exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@dataclass
class Run:
    """One finished container: exit code and its two streams."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Mounts:
    """Bind mounts and environment for a container: ``-v host:container[:ro]`` and ``-e K=V``."""

    volumes: list[tuple[Path, str, bool]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def args(self) -> list[str]:
        out = []
        for host, inside, ro in self.volumes:
            out += ["-v", f"{host}:{inside}" + (":ro" if ro else "")]
        for key, value in self.env.items():
            out += ["-e", f"{key}={value}"]
        return out


def start(image: str, args: Sequence[str], mounts: Mounts | None = None, name: str | None = None,
          network: str = "none") -> str:
    """``docker run -d``: the container id (stop it with :func:`remove`)."""
    name = name or f"sam2edge-test-{uuid.uuid4().hex[:8]}"
    r = docker("run", "-d", "--name", name, f"--network={network}", *(mounts.args() if mounts else []), image, *args)
    return r.stdout.strip()


def remove(container: str) -> None:
    docker("rm", "-f", container, check=False, timeout=60)


def run(image: str, *args: str, mounts: Mounts | None = None, timeout: float = 180, network: str = "none") -> Run:
    """Run a container to its end: ``docker run -d``, ``docker wait`` with a timeout, logs, ``docker rm -f``
    (``timeout docker run`` would stop the client, not the container)."""
    t0 = time.monotonic()
    container = start(image, args, mounts, network=network)
    try:
        try:
            waited = docker("wait", container, timeout=timeout)
        except subprocess.TimeoutExpired:
            logs = docker("logs", container, check=False)
            raise AssertionError(f"container did not finish in {timeout} s: {' '.join(args)}\n{logs.stdout}{logs.stderr}") from None
        logs = docker("logs", container, check=False)
        return Run(int(waited.stdout.strip()), logs.stdout, logs.stderr, time.monotonic() - t0)
    finally:
        remove(container)


# -- the stand-in base and the image --------------------------------------------------------------


@pytest.fixture(scope="session")
def docker_ready() -> None:
    problem = docker_problem()
    if problem:
        missing(problem + "; .ci/run installs docker.io and starts dockerd")


@pytest.fixture(scope="session")
def image(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """docker/Dockerfile on the stand-in base, runtime only (scripts/ci-image.sh), once per session. When .ci/run
    already started that script in the background, this waits for it and finds every layer cached."""
    times = os.environ.get("SAM2EDGE_CI_TIMES") or str(tmp_path_factory.mktemp("ci-image") / "times")
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(REPO / "scripts" / "ci-image.sh")], capture_output=True, text=True, timeout=2400,
                       env={**os.environ, "SAM2EDGE_CI_TIMES": times})
    if r.returncode == 3:
        missing(r.stderr.strip())
    assert r.returncode == 0, f"scripts/ci-image.sh failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    TIMINGS["image fixture (scripts/ci-image.sh, waiting for a background build if one runs)"] = time.monotonic() - t0
    for line in Path(times).read_text().splitlines():
        seconds, what = line.split(" ", 1)
        TIMINGS[f"  {what}"] = float(seconds)
    return IMAGE_TAG


# -- the export the containers serve ---------------------------------------------------------------


@dataclass
class Deployed:
    """What a user mounts: the store (an export made elsewhere) and the models folder with its checkpoint."""

    store: Path
    models: Path
    model_dir_name: str  # <variant>-<sha8>
    onnx_dir: Path  # the host's copy, for host-side references

    def mounts(self, **env: str) -> Mounts:
        return Mounts([(self.store, "/data/engines", True), (self.models, "/data/models", True)], dict(env))


def _readable_copy(src_model_dir: Path, checkpoint: Path, dest: Path) -> Deployed:
    """Hard links (or copies) in world-readable folders: the container's user is uid 10001, not the owner."""
    store, models = dest / "store", dest / "models"
    shutil.copytree(src_model_dir, store / src_model_dir.name, copy_function=_link_or_copy)
    models.mkdir(parents=True)
    _link_or_copy(str(checkpoint), str(models / "sam2.1_hiera_tiny.pt"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return Deployed(store, models, src_model_dir.name, store / src_model_dir.name / "onnx")


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Deployed:
    """The session's random-weight sam2.1_hiera_tiny export (``tiny_export``) as a store + models folder.

    ``SAM2EDGE_TEST_EXPORTED``: a folder with ``sam2.1_hiera_tiny.pt`` and ``engines/<variant>-<sha8>/onnx``
    made by tests.conftest.export_random, used instead (saves the export's minutes when iterating)."""
    dest = tmp_path_factory.mktemp("deployed")
    given = os.environ.get("SAM2EDGE_TEST_EXPORTED")
    if given:
        root = Path(given)
        (onnx,) = list((root / "engines").glob("*/onnx"))
        return _readable_copy(onnx.parent, root / "sam2.1_hiera_tiny.pt", dest)
    exported = request.getfixturevalue("tiny_export")
    return _readable_copy(exported.onnx_dir.parent, exported.checkpoint, dest)


def pytest_collection_modifyitems(session, config, items):
    """The tests that run containers go last: .ci/run builds their image in the background meanwhile, and
    ``deployed`` then reuses the session's export that earlier tests made."""
    uses_image = [item for item in items if "image" in getattr(item, "fixturenames", ())
                  and str(item.fspath).startswith(str(Path(__file__).parent))]
    if uses_image:
        keep = [item for item in items if item not in uses_image]
        items[:] = keep + uses_image


def pytest_terminal_summary(terminalreporter):  # noqa: D103 - pytest hook
    if not TIMINGS:
        return
    terminalreporter.section("deploy: what the Docker part of the suite cost")
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"  {seconds:7.1f} s  {what}")
