#!/usr/bin/env bash
# A venv with the tritonserver binary the scale-out tests serve a repository with (tests/scale).
#   scripts/triton_venv.sh [VENV]      (default: $SAM2EDGE_TRITON_VENV or ~/.cache/sam2edge/triton-venv)
# Only nvidia-pytriton's bundled server is used (not its Python API), so everything is installed with
# --no-deps from requirements/triton-server.txt. The Python backend needs its stub for this Python next to
# libtriton_python.so; pytriton copies it there at run time, we do it once here. Skipped when the venv was
# made from the same requirements file.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-${SAM2EDGE_TRITON_VENV:-$HOME/.cache/sam2edge/triton-venv}}"
REQ=requirements/triton-server.txt
STAMP="$VENV/.sam2edge-requirements"
if [ -f "$STAMP" ] && cmp -s "$STAMP" "$REQ"; then
    echo "triton venv up to date: $VENV"
    exit 0
fi
start=$(date +%s)
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --no-deps -r "$REQ"
PY_VERSION=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
SERVER="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/pytriton/tritonserver"
cp "$SERVER/python_backend_stubs/$PY_VERSION/triton_python_backend_stub" "$SERVER/backends/python/"
cp "$REQ" "$STAMP"
echo "triton venv ready in $(( $(date +%s) - start )) s: $VENV ($(du -sh "$VENV" | cut -f1))"
