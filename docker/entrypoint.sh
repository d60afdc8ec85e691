#!/usr/bin/env bash
# The sam2edge appliance: the images' entrypoint and the Jetson systemd service's command.
#
#   serve [ARGS]     (default) prepare the model and this GPU's TensorRT engines (prepare.py: built on the
#                    first start, kept in the store, reused later), then `sam2edge serve` on
#                    $SAM2EDGE_HOST:$SAM2EDGE_PORT with an API key; ARGS go to `sam2edge serve`
#   test [ARGS]      the device self-check (test.py): what runs here, and a segmentation when the store has a model
#   healthcheck      exit 0 when the server answers /healthz (the images' HEALTHCHECK)
#   doctor|models|segment|track|export|build|download ...   that sam2edge command
#   anything else    executed as given (e.g. bash)
#
# Environment: SAM2EDGE_MODEL (sam2.1_hiera_tiny), SAM2EDGE_HOST (0.0.0.0), SAM2EDGE_PORT (9001),
# SAM2EDGE_BACKEND (auto), SAM2EDGE_PRECISION (fp16), SAM2EDGE_ENGINES_MODE (auto|off|require),
# SAM2EDGE_STORE, SAM2EDGE_MODELS_DIR, and the API key: SAM2EDGE_API_KEY_FILE, else the secret
# /run/secrets/sam2edge_api_key, else SAM2EDGE_API_KEY. A non-loopback address without a key is refused.
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
SAM2EDGE_HOST=${SAM2EDGE_HOST:-0.0.0.0}
SAM2EDGE_PORT=${SAM2EDGE_PORT:-9001}
SAM2EDGE_BACKEND=${SAM2EDGE_BACKEND:-auto}
SECRET_FILE=${SAM2EDGE_SECRET_FILE:-/run/secrets/sam2edge_api_key}

log() { printf 'sam2edge-appliance: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_loopback() {
    case "$1" in
        127.* | localhost | ::1) return 0 ;;
        *) return 1 ;;
    esac
}

# The --api-key-file argument for `sam2edge serve` (the key never appears on a command line).
api_key_args() {
    if [[ -n "${SAM2EDGE_API_KEY_FILE:-}" ]]; then
        [[ -r "$SAM2EDGE_API_KEY_FILE" ]] || die "SAM2EDGE_API_KEY_FILE=$SAM2EDGE_API_KEY_FILE is not a readable file"
        printf '%s\n' "$SAM2EDGE_API_KEY_FILE"
    elif [[ -r "$SECRET_FILE" ]]; then
        printf '%s\n' "$SECRET_FILE"
    elif [[ -n "${SAM2EDGE_API_KEY:-}" ]]; then
        local file
        file=$(mktemp)
        chmod 600 "$file"
        printf '%s\n' "$SAM2EDGE_API_KEY" >"$file"
        printf '%s\n' "$file"
    elif ! is_loopback "$SAM2EDGE_HOST"; then
        die "listening on $SAM2EDGE_HOST needs an API key: mount a secret at $SECRET_FILE (compose: secrets), \
or set SAM2EDGE_API_KEY_FILE to a file, or SAM2EDGE_API_KEY (8+ characters)"
    fi
}

serve() {
    local key_file model
    key_file=$(api_key_args)
    unset SAM2EDGE_API_KEY
    log "preparing ${SAM2EDGE_MODEL:-sam2.1_hiera_tiny} (store ${SAM2EDGE_STORE:-engines}, models ${SAM2EDGE_MODELS_DIR:-unset})"
    model=$(python3 "$here/prepare.py") || die "the model could not be prepared (see above)"
    local args=(--model "$model" --host "$SAM2EDGE_HOST" --port "$SAM2EDGE_PORT" --backend "$SAM2EDGE_BACKEND")
    if [[ -n "$key_file" ]]; then
        args+=(--api-key-file "$key_file")
    fi
    log "starting: sam2edge serve ${args[*]} $*"
    exec sam2edge serve "${args[@]}" "$@"
}

healthcheck() {
    local host=$SAM2EDGE_HOST
    if [[ "$host" == "0.0.0.0" || "$host" == "::" ]]; then
        host=127.0.0.1
    fi
    exec python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)' \
        "http://$host:$SAM2EDGE_PORT/healthz"
}

command=${1:-serve}
if [[ $# -gt 0 ]]; then
    shift
fi
case "$command" in
    serve) serve "$@" ;;
    test) exec python3 "$here/test.py" "$@" ;;
    healthcheck) healthcheck ;;
    doctor | models | segment | track | export | build | download) exec sam2edge "$command" "$@" ;;
    *) exec "$command" "$@" ;;
esac
