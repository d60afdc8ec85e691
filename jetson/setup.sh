#!/usr/bin/env bash
# sam2edge on a bare JetPack 6 host (Jetson Orin Nano / NX / AGX, L4T r36.4+): run from a checkout of the repository.
#
#   jetson/setup.sh --check            what this board is, and what to change before the first engine build
#   sudo jetson/setup.sh               + a venv in /opt/sam2edge that sees JetPack's TensorRT, and the packages
#   sudo jetson/setup.sh --install-service      + the systemd service (sam2edge serve on port 9001, API key)
#   jetson/setup.sh --dry-run [flags]           every check, then each change printed ("would run: ..."), none made
#
# It detects the L4T release and JetPack version and refuses unsupported ones; checks swap/zram and the power
# mode and prints what it recommends; it changes the system only when a flag asks for it (--add-swap,
# --power-mode, --install-service). Options:
#   --prefix DIR            install folder (default /opt/sam2edge)
#   --cpu-onnxruntime       PyPI's CPU ONNX Runtime instead of the GPU build from the Jetson community index
#   --ort-index-url URL     that index (default https://pypi.jetson-ai-lab.io/jp6/cu126)
#   --ort-spec SPEC         the GPU ONNX Runtime requirement (default "onnxruntime-gpu>=1.20,<1.27")
#   --add-swap GIB          create and enable a GIB GiB swap file at /swapfile (and add it to /etc/fstab)
#   --power-mode ID         set the nvpmodel power mode ID (list them with: nvpmodel -p --verbose)
#   --install-service       install and start the systemd service (user sam2edge, /var/lib/sam2edge, /etc/sam2edge)
#   --allow-unsupported     go on after the release check fails (no help is promised there)
#   --dry-run               print the commands that would change the system instead of running them (no sudo needed)
# Environment for tests: SAM2EDGE_SYSROOT is prepended to every path read (/etc, /proc, /swapfile), not to writes.
set -euo pipefail

ROOT=${SAM2EDGE_SYSROOT:-}
REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
PREFIX=/opt/sam2edge
ORT_INDEX_URL=https://pypi.jetson-ai-lab.io/jp6/cu126
ORT_SPEC="onnxruntime-gpu>=1.20,<1.27"
ORT_CPU_SPEC="onnxruntime==1.23.2"
CHECK_ONLY=0 DRY_RUN=0 CPU_ORT=0 ADD_SWAP="" POWER_MODE="" INSTALL_SERVICE=0 ALLOW_UNSUPPORTED=0

say() { printf '%s\n' "$*"; }
recommend() { printf 'recommend: %s\n' "$*"; }
die() { printf 'setup.sh: %s\n' "$1" >&2; exit "${2:-1}"; }

usage() { sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

# Every command that changes the system goes through act (or write_file): --dry-run prints it instead.
act() {
    if [[ $DRY_RUN -eq 1 ]]; then
        printf 'would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# What a flag changed (a dry run says it was not done).
changed() {
    if [[ $DRY_RUN -eq 1 ]]; then say "dry run, not done: $*"; else say "$*"; fi
}

# Standard input into FILE (created with MODE, or appended to with MODE "append").
write_file() {
    local file=$1 mode=$2
    if [[ $DRY_RUN -eq 1 ]]; then
        say "would write: $file ($mode)"
        cat >/dev/null
    elif [[ "$mode" == append ]]; then
        cat >>"$file"
    else
        (umask 077 && cat >"$file") && chmod "$mode" "$file"
    fi
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --check) CHECK_ONLY=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --prefix) PREFIX=${2:?--prefix needs a folder}; shift ;;
        --cpu-onnxruntime) CPU_ORT=1 ;;
        --ort-index-url) ORT_INDEX_URL=${2:?--ort-index-url needs a URL}; shift ;;
        --ort-spec) ORT_SPEC=${2:?--ort-spec needs a requirement}; shift ;;
        --add-swap) ADD_SWAP=${2:?--add-swap needs a size in GiB}; shift ;;
        --power-mode) POWER_MODE=${2:?--power-mode needs a mode id}; shift ;;
        --install-service) INSTALL_SERVICE=1 ;;
        --allow-unsupported) ALLOW_UNSUPPORTED=1 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" 2 ;;
    esac
    shift
done
[[ -z "$ADD_SWAP" || "$ADD_SWAP" =~ ^[1-9][0-9]*$ ]] || die "--add-swap takes a whole number of GiB, got $ADD_SWAP" 2
[[ -z "$POWER_MODE" || "$POWER_MODE" =~ ^[0-9]+$ ]] || die "--power-mode takes a mode number, got $POWER_MODE" 2

# -- what this board is ---------------------------------------------------------------------------------

# "# R36 (release), REVISION: 4.3, GCID: ..." -> 36.4.3
l4t_release() {
    local file="$ROOT/etc/nv_tegra_release" line major revision
    [[ -r "$file" ]] || return 1
    line=$(head -n 1 "$file")
    major=$(sed -n 's/^# R\([0-9]\+\) (release).*/\1/p' <<<"$line")
    revision=$(sed -n 's/.*REVISION: \([0-9.]\+\).*/\1/p' <<<"$line")
    [[ -n "$major" && -n "$revision" ]] || return 1
    printf '%s.%s\n' "$major" "$revision"
}

# JetPack for an L4T release (the table jetson-containers keeps); empty when unknown.
jetpack_of() {
    case "$1" in
        36.0.0) echo "6.0 EA" ;; 36.2.0) echo "6.0 DP" ;; 36.3.0) echo "6.0" ;; 36.4.0) echo "6.1" ;;
        36.4.2) echo "6.1.1" ;; 36.4.3) echo "6.2" ;; 36.4.4 | 36.4.7) echo "6.2.1" ;;
        35.*) echo "5.1.x" ;; 32.*) echo "4.x" ;; 38.*) echo "7.0" ;; 39.*) echo "7.x" ;;
        *) echo "" ;;
    esac
}

# Exit status 0 when the release is supported; the refusal message on stdout otherwise.
release_problem() {
    local l4t=$1 major minor
    major=${l4t%%.*}
    minor=$(cut -d. -f2 <<<"$l4t")
    if [[ "$major" -lt 36 ]]; then
        echo "L4T R$l4t (JetPack $(jetpack_of "$l4t")) is not supported: sam2edge needs JetPack 6.1 or later (L4T r36.4+: \
Python 3.10, CUDA 12.6, TensorRT 10). JetPack 5 ships Python 3.8, CUDA 11.4 and TensorRT 8.5. Reflash with JetPack 6.2 (SDK Manager)."
    elif [[ "$major" -ge 38 ]]; then
        echo "L4T R$l4t (JetPack $(jetpack_of "$l4t"), Jetson Thor) is not supported by this script yet: JetPack 7 brings \
Ubuntu 24.04, Python 3.12 and CUDA 13 (see jetson/README.md, 'JetPack 7')."
    elif [[ "$major" -eq 36 && "$minor" -lt 4 ]]; then
        echo "L4T R$l4t (JetPack $(jetpack_of "$l4t")) ships TensorRT 8.6 and CUDA 12.2; sam2edge needs TensorRT 10 \
(JetPack 6.1+, L4T r36.4). Upgrade JetPack (point the L4T apt source at r36.4 and 'sudo apt dist-upgrade', or reflash)."
    elif [[ "$major" -ne 36 ]]; then
        echo "L4T R$l4t is unknown to this script."
    else
        return 0
    fi
    return 1
}

meminfo_kib() { awk -v k="$1:" '$1 == k {print $2}' "$ROOT/proc/meminfo"; }
gib() { awk -v kib="$1" 'BEGIN {printf "%.1f", kib / 1048576}'; }

board_model() {
    local file="$ROOT/proc/device-tree/model"
    if [[ -r "$file" ]]; then tr -d '\0' <"$file"; else echo "unknown Jetson module"; fi
}

check_memory() {
    local total swap zram disk
    total=$(meminfo_kib MemTotal)
    swap=$(meminfo_kib SwapTotal)
    # /proc/swaps: one row per swap area, sizes in KiB; zram is compressed RAM, not disk.
    zram=$(awk 'NR > 1 && $1 ~ /zram/ {n++} END {print n + 0}' "$ROOT/proc/swaps" 2>/dev/null || echo 0)
    disk=$(awk 'NR > 1 && $1 !~ /zram/ {kib += $3} END {print kib + 0}' "$ROOT/proc/swaps" 2>/dev/null || echo "${swap:-0}")
    say "memory: $(gib "$total") GiB RAM shared by CPU and GPU; swap $(gib "${swap:-0}") GiB, of which \
$(gib "$disk") GiB on disk and $zram zram device(s)"
    if [[ "$total" -lt 16777216 && "$disk" -lt 4194304 ]]; then
        recommend "at least 4 GiB of swap on disk before the first engine build (TensorRT's builder peaks above what an \
8 GB board has free): sudo $0 --add-swap 8"
    fi
    if [[ "$zram" -gt 0 && "$total" -lt 16777216 ]]; then
        recommend "zram swap is compressed RAM and does not relieve the builder: with a swap file in place, \
'sudo systemctl disable nvzramconfig' frees it (reboot)"
    fi
}

check_power() {
    local mode
    if ! command -v nvpmodel >/dev/null 2>&1; then
        say "power mode: unknown (nvpmodel not found)"
        return 0
    fi
    mode=$(nvpmodel -q 2>/dev/null | sed -n 's/^NV Power Mode: *//p' | head -n 1)
    say "power mode: ${mode:-unknown}"
    if [[ "$mode" != MAXN* ]]; then
        recommend "the highest power mode for engine builds and serving: list the modes with 'nvpmodel -p --verbose', \
then sudo $0 --power-mode ID (MAXN is mode 0 on AGX Orin and Orin NX; on an Orin Nano with JetPack 6.2 the \
highest is MAXN_SUPER), and 'sudo jetson_clocks' during the first build"
    fi
}

check_python() {
    local version
    version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)
    [[ "$version" == 3.10 ]] || die "python3 is $version; JetPack 6 (Ubuntu 22.04) has Python 3.10, which the wheels in requirements/jetson.txt are for"
    if python3 -c 'import tensorrt' 2>/dev/null; then
        say "TensorRT: $(python3 -c 'import tensorrt; print(tensorrt.__version__)') (JetPack's Python bindings)"
    else
        say "TensorRT: the Python bindings are missing: 'sudo apt install python3-libnvinfer' (part of nvidia-jetpack); \
without them sam2edge runs on ONNX Runtime only"
    fi
}

# -- what the flags change ------------------------------------------------------------------------------

need_root() { [[ $EUID -eq 0 || $DRY_RUN -eq 1 ]] || die "$1 changes the system: run with sudo"; }

install_packages() {
    local venv="$PREFIX/venv"
    act mkdir -p "$PREFIX/bin" || die "cannot write $PREFIX: run with sudo, or pass --prefix ~/sam2edge"
    say "venv: $venv (sees the system site-packages: JetPack's TensorRT bindings)"
    act python3 -m venv --system-site-packages "$venv" || die "python3 -m venv failed: sudo apt install python3-venv"
    act "$venv/bin/pip" install --no-cache-dir -r "$REPO/requirements/jetson.txt"
    if [[ $CPU_ORT -eq 1 ]]; then
        act "$venv/bin/pip" install --no-cache-dir -c "$REPO/requirements/jetson.txt" "$ORT_CPU_SPEC"
    else
        act "$venv/bin/pip" install --no-cache-dir --extra-index-url "$ORT_INDEX_URL" -c "$REPO/requirements/jetson.txt" \
            "$ORT_SPEC" || die "the GPU ONNX Runtime did not install from $ORT_INDEX_URL; retry, or pass --cpu-onnxruntime"
    fi
    act "$venv/bin/pip" install --no-cache-dir --no-deps "$REPO"
    act install -m 0755 "$REPO/docker/entrypoint.sh" "$PREFIX/bin/sam2edge-appliance"
    act install -m 0644 "$REPO/docker/prepare.py" "$REPO/docker/test.py" "$PREFIX/bin/"
    act "$venv/bin/sam2edge" doctor || true
}

add_swap() {
    need_root --add-swap
    [[ ! -e "$ROOT/swapfile" ]] || die "/swapfile exists already; remove it first or size it by hand"
    act fallocate -l "${ADD_SWAP}G" /swapfile && act chmod 600 /swapfile && act mkswap /swapfile && act swapon /swapfile
    grep -q '^/swapfile ' "$ROOT/etc/fstab" 2>/dev/null || echo '/swapfile none swap sw 0 0' | write_file /etc/fstab append
    changed "swap: /swapfile, ${ADD_SWAP} GiB, enabled and in /etc/fstab"
}

set_power_mode() {
    need_root --power-mode
    command -v nvpmodel >/dev/null 2>&1 || die "nvpmodel not found"
    act nvpmodel -m "$POWER_MODE"
    [[ $DRY_RUN -eq 1 ]] || say "power mode: now $(nvpmodel -q | sed -n 's/^NV Power Mode: *//p' | head -n 1)"
}

install_service() {
    need_root --install-service
    local total memory_max
    total=$(meminfo_kib MemTotal)
    memory_max="$((total * 3 / 4 / 1024))M"  # three quarters of the RAM: the rest stays with the system
    id sam2edge >/dev/null 2>&1 || act useradd --system --home-dir /var/lib/sam2edge --shell /usr/sbin/nologin \
        --groups video,render sam2edge
    act install -d -m 0755 -o sam2edge -g sam2edge /var/lib/sam2edge /var/lib/sam2edge/engines /var/lib/sam2edge/models
    act install -d -m 0750 -g sam2edge /etc/sam2edge
    if [[ ! -s "$ROOT/etc/sam2edge/api_key" ]]; then
        python3 -c 'import secrets; print(secrets.token_hex(24))' | write_file /etc/sam2edge/api_key 0640
        act chgrp sam2edge /etc/sam2edge/api_key
        changed "API key: written to /etc/sam2edge/api_key (clients send it as 'Authorization: Bearer KEY')"
    fi
    [[ -e "$ROOT/etc/sam2edge/sam2edge.env" ]] || act install -m 0644 "$REPO/jetson/sam2edge.env" /etc/sam2edge/sam2edge.env
    sed -e "s#@PREFIX@#$PREFIX#g" -e "s#@MEMORY_MAX@#$memory_max#g" "$REPO/jetson/sam2edge.service" \
        | write_file /etc/systemd/system/sam2edge.service 0644
    act systemctl daemon-reload
    act systemctl enable --now sam2edge.service
    changed "service: sam2edge.service enabled and started (MemoryMax=$memory_max); the first start builds this board's \
engines: journalctl -u sam2edge -f"
}

# -- main -----------------------------------------------------------------------------------------------

L4T=$(l4t_release) || die "this is not a Jetson with L4T (no readable $ROOT/etc/nv_tegra_release); on an x86-64 GPU \
box use docker/Dockerfile, or pip install 'sam2edge[onnx,tensorrt,server]'" 3
JETPACK=$(jetpack_of "$L4T")
say "board: $(board_model)"
say "L4T: $L4T (JetPack ${JETPACK:-unknown to this script})"
if ! problem=$(release_problem "$L4T"); then
    [[ $ALLOW_UNSUPPORTED -eq 1 ]] || die "$problem" 3
    say "warning: $problem (going on: --allow-unsupported)"
fi
check_memory
check_power
[[ $CHECK_ONLY -eq 1 ]] && { say "check only: nothing was changed"; exit 0; }

check_python
install_packages
[[ -z "$ADD_SWAP" ]] || add_swap
[[ -z "$POWER_MODE" ]] || set_power_mode
[[ $INSTALL_SERVICE -eq 0 ]] || install_service
[[ $DRY_RUN -eq 0 ]] || { say "dry run: nothing was changed"; exit 0; }
say "done: $PREFIX/venv/bin/sam2edge doctor; the device check: $PREFIX/bin/sam2edge-appliance test"
