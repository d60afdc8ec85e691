"""``sam2edge serve [--model M] [--host H] [--port P] [--api-key-file F]``

Loads the model once, prints what runs on which backend and why, and serves the HTTP API
(Roboflow-compatible /sam2 endpoints, video sessions, a camera WebSocket, the page at /,
/healthz, /readyz, /metrics). Binds 127.0.0.1:9001 by default; any other address needs an
API key. Needs the ``server`` extra: pip install 'sam2edge[server]'.
"""

from __future__ import annotations

import argparse

from sam2edge.cli.common import add_model_options
from sam2edge.server.command import add_server_arguments, run_serve


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_server_arguments(p)
    add_model_options(p)


def run(args: argparse.Namespace) -> int:
    return run_serve(args)
