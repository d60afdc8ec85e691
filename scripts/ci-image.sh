#!/usr/bin/env bash
# Builds docker/Dockerfile for the tests (tests/deploy) where no registry image can be pulled: on a stand-in base
# made from Debian packages (mmdebstrap bookworm with python3-venv, `docker import`), runtime only (EXPORTER=none).
#
# One build at a time (flock): .ci/run starts it in the background at the beginning, and the session fixture runs
# it again when the image tests come, which waits for that build and then finds every layer cached.
# Appends "<seconds> <run>: <what>" lines to $SAM2EDGE_CI_TIMES (default /tmp/sam2edge-ci-image.times) for the
# report; <run> is $SAM2EDGE_CI_RUN (default "fixture"; .ci/run's background build says "background").
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

DOCKER=/usr/bin/docker  # Debian's client: BuildKit built in (another docker on PATH may lack buildx)
BASE=${SAM2EDGE_CI_BASE:-local/sam2edge-base:bookworm}
IMAGE=${SAM2EDGE_CI_IMAGE:-sam2edge:ci}
TIMES=${SAM2EDGE_CI_TIMES:-/tmp/sam2edge-ci-image.times}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

exec 9>"${TMPDIR:-/tmp}/sam2edge-ci-image.lock"
waited=$(date +%s.%N)
flock 9
RUN=${SAM2EDGE_CI_RUN:-fixture}
record() { awk -v a="$1" -v b="$(date +%s.%N)" -v what="$RUN: $2" 'BEGIN {printf "%.1f %s\n", b - a, what}' >>"$TIMES"; }
record "$waited" "waited for another build of the image (scripts/ci-image.sh)"

start=$(date +%s.%N)
if ! "$DOCKER" image inspect "$BASE" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null || { echo "ci-image: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 3; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates bookworm "$tmp/base.tar"
    "$DOCKER" import -c 'CMD ["/bin/bash"]' "$tmp/base.tar" "$BASE" >/dev/null
    rm -rf "$tmp"
fi
record "$start" "stand-in base image (mmdebstrap + docker import; ~0 when it exists)"

start=$(date +%s.%N)
secret=()
if [[ -r "$CA_BUNDLE" ]]; then
    secret=(--secret "id=ca_bundle,src=$CA_BUNDLE")
fi
DOCKER_BUILDKIT=1 "$DOCKER" build --network host --progress plain "${secret[@]}" \
    --build-arg "BASE_IMAGE=$BASE" --build-arg EXPORTER=none -f docker/Dockerfile -t "$IMAGE" .
record "$start" "docker build docker/Dockerfile (cached layers are reused)"
