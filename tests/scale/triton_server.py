"""A real ``tritonserver`` on 127.0.0.1 for the tests and the benchmark.

The binary is nvidia-pytriton's (Python backend only), installed into its own venv by
``scripts/triton_venv.sh``. Its Python stub embeds this machine's Python: it needs the running
interpreter's ``lib`` folder on ``LD_LIBRARY_PATH`` and the venv's ``bin`` first on ``PATH`` (the stub
derives its prefix, so its numpy < 2, from the ``python3`` it finds there; ``PYTHONPATH`` is ignored).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

VENV_ENV = "SAM2EDGE_TRITON_VENV"
DEFAULT_VENV = Path.home() / ".cache" / "sam2edge" / "triton-venv"


def venv_dir() -> Path:
    return Path(os.environ.get(VENV_ENV) or DEFAULT_VENV)


def server_dir(venv: Path) -> Path | None:
    """The venv's ``pytriton/tritonserver`` folder when the binary and this Python's stub are in place."""
    found = sorted(venv.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    for folder in found:
        if (folder / "bin" / "tritonserver").is_file() and (folder / "backends" / "python" / "triton_python_backend_stub").is_file():
            return folder
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalTriton:
    process: subprocess.Popen
    port: int
    log: Path
    started_s: float

    def url(self, prefix: str) -> str:
        return f"triton://127.0.0.1:{self.port}/{prefix}"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.is_file() else ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Triton unloads its models and stops its stubs
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_triton(repository: Path, log: Path, venv: Path | None = None, models: tuple[str, ...] = (),
                 timeout: float = 180.0) -> LocalTriton:
    """Start ``tritonserver`` on a free gRPC port of 127.0.0.1 (no HTTP, no metrics) and wait until every model
    in ``models`` is ready; RuntimeError with the server's log tail when it is not within ``timeout`` seconds."""
    import tritonclient.grpc as grpcclient

    venv = venv or venv_dir()
    folder = server_dir(venv)
    if folder is None:
        raise FileNotFoundError(f"no tritonserver in {venv}: run scripts/triton_venv.sh")
    port = free_port()
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    libdir = sysconfig.get_config_var("LIBDIR") or str(Path(sys.base_prefix) / "lib")
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    cmd = [str(folder / "bin" / "tritonserver"), "--model-repository", str(repository),
           "--backend-directory", str(folder / "backends"), "--allow-http", "false", "--allow-metrics", "false",
           "--grpc-address", "127.0.0.1", "--grpc-port", str(port), "--exit-timeout-secs", "10", "--log-verbose", "0"]
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = LocalTriton(proc, port, log, 0.0)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{port}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            if client.is_server_live() and all(client.is_model_ready(m) for m in models):
                server.started_s = time.perf_counter() - t0
                return server
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"tritonserver was not ready within {timeout:.0f} s:\n{server.log_tail()}")
