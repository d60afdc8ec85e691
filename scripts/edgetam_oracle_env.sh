#!/usr/bin/env bash
# Create the EdgeTAM oracle venv (tests/edgetam/oracle.py) from requirements/edgetam-oracle.txt.
#   bash scripts/edgetam_oracle_env.sh [VENV_DIR]      (default: .venv-edgetam in the checkout)
# Idempotent: an existing venv with every pinned package is left as it is. The tests find it at
# .venv-edgetam, or wherever SAM2EDGE_EDGETAM_PYTHON points.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-edgetam}"
req=requirements/edgetam-oracle.txt
stamp="$venv/.sam2edge-requirements"
if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
    echo "EdgeTAM oracle venv up to date: $venv"
    exit 0
fi
start=$SECONDS
python3 -m venv --clear "$venv"
# --no-deps: exactly the pinned set, nothing pulled in behind it (unpinned torch would fetch CUDA wheels).
"$venv/bin/python" -m pip install -q --no-deps -r "$req"
"$venv/bin/python" - <<'PY'
import sys
sys.path.insert(0, ".")
from tests.edgetam.torchvision_standin import install
install()
import sam2.modeling.perceiver, timm  # noqa: E401,F401  the official code and its trunk import
from timm.models import create_model
create_model("repvit_m1", pretrained=False, features_only=True, out_indices=(0, 1, 2, 3))
PY
cp "$req" "$stamp"
echo "EdgeTAM oracle venv ready: $venv ($((SECONDS - start)) s)"
