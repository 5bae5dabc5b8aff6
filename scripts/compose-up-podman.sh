#!/usr/bin/env bash
# Runs compose.yaml on podman's Docker API, starting services in order and probing readiness.
#
# usage: scripts/compose-up-podman.sh [up]          start postgres, redis -> migrate -> backend -> frontend
#        scripts/compose-up-podman.sh seed          load the demo catalog (shop-seed, one-off)
#        scripts/compose-up-podman.sh down [-v] [--keep-service]
#                                                   stop and remove the stack (-v: and its volumes),
#                                                   then stop the podman API service (unless kept:
#                                                   other tools may share its socket)
#        scripts/compose-up-podman.sh ps | logs [SERVICE...]
#
# Why not plain `docker-compose up`: podman 4.3 never runs health checks (no systemd), so
# compose.yaml's `condition: service_healthy` would wait forever. This script adds
# compose.podman.yaml (local datastore images, relaxed conditions) and does the waiting
# itself: the containers' own health checks run on demand (`podman healthcheck run`:
# pg_isready, redis-cli ping), `shop-migrate` must exit 0, then HTTP /readyz on the backend
# and /nginx-health + /api/categories through the frontend, on the published 127.0.0.1 ports.
#
# Images: the backend/frontend images must exist (scripts/build-images.sh); the postgres and
# redis images are built on first use (scripts/build-base-images.sh services).
# Environment: READY_TIMEOUT (seconds per service, default 120); .env as for compose.yaml.
set -Eeuo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/podman-env.sh
source "$SCRIPTS_DIR/podman-env.sh"
ROOT=$SHOP_OPS_ROOT
READY_TIMEOUT=${READY_TIMEOUT:-120}

fail() {
    echo "compose-up-podman: error: $*" >&2
    exit 1
}
log() { echo "compose-up-podman: $*" >&2; }
trap 'echo "compose-up-podman: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

command -v docker-compose >/dev/null || fail "docker-compose is not installed"
cd "$ROOT"
# The project name comes from the environment or .env; "shop" otherwise (not the clone's
# directory name, so every clone's stack looks the same).
if [ -z "${COMPOSE_PROJECT_NAME:-}" ] && ! grep -qs '^COMPOSE_PROJECT_NAME=' .env; then
    export COMPOSE_PROJECT_NAME=shop
fi
COMPOSE=(docker-compose -f compose.yaml -f compose.podman.yaml)

compose() { "${COMPOSE[@]}" "$@"; }

# config_value PYTHON_EXPR: evaluate over the merged compose config (dict `c`).
config_value() {
    compose config | /usr/bin/python3 -c "import sys, yaml; c = yaml.safe_load(sys.stdin); print($1)"
}

# published_port SERVICE TARGET: the host port the service's TARGET port is published on.
published_port() {
    config_value "next(str(p['published']) if isinstance(p, dict) else p.split(':')[-2] for p in c['services']['$1']['ports'] if (str(p['target']) if isinstance(p, dict) else p.split(':')[-1].split('/')[0]) == '$2')"
}

container_of() {
    local id
    id=$(compose ps -q "$1" 2>/dev/null | head -n 1)
    [ -n "$id" ] || fail "service $1 has no container"
    echo "$id"
}

show_logs() {
    echo "---- last log lines of $1 ----" >&2
    compose logs --no-color --tail=30 "$1" >&2 || true
}

# wait_health SERVICE: run the container's own health check until it passes.
wait_health() {
    local service=$1 id deadline=$((SECONDS + READY_TIMEOUT))
    id=$(container_of "$service")
    until podman healthcheck run "$id" >/dev/null 2>&1; do
        if [ "$(podman inspect --format '{{.State.Running}}' "$id" 2>/dev/null)" != true ]; then
            show_logs "$service"
            fail "$service exited before it was ready"
        fi
        if [ $SECONDS -ge $deadline ]; then
            show_logs "$service"
            fail "$service not healthy after ${READY_TIMEOUT}s"
        fi
        sleep 1
    done
    log "$service healthy ($(podman inspect --format '{{.Config.Healthcheck.Test}}' "$id" 2>/dev/null || echo check))"
}

# wait_http SERVICE URL: poll URL until it answers 2xx.
wait_http() {
    local service=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT))
    until curl -fsS --max-time 3 -o /dev/null "$url" 2>/dev/null; do
        if [ "$(podman inspect --format '{{.State.Running}}' "$(container_of "$service")" 2>/dev/null)" != true ]; then
            show_logs "$service"
            fail "$service exited before $url answered"
        fi
        if [ $SECONDS -ge $deadline ]; then
            show_logs "$service"
            curl -sS --max-time 3 "$url" >&2 || true
            fail "$url did not answer 2xx within ${READY_TIMEOUT}s"
        fi
        sleep 1
    done
    # Record the image's own health check too, so `ps` shows "healthy" like on Docker.
    podman healthcheck run "$(container_of "$service")" >/dev/null 2>&1 || true
    log "$service ready: $url"
}

require_images() {
    local service image missing=()
    for service in migrate backend frontend; do
        image=$(config_value "c['services']['$service']['image']")
        podman image exists "$image" || missing+=("$image")
    done
    [ ${#missing[@]} -eq 0 ] ||
        fail "missing image(s) ${missing[*]}: run scripts/build-images.sh (or set BACKEND_IMAGE/FRONTEND_IMAGE)"
    local datastores=()
    podman image exists "$(config_value "c['services']['postgres']['image']")" || datastores+=(postgres)
    podman image exists "$(config_value "c['services']['redis']['image']")" || datastores+=(redis)
    if [ ${#datastores[@]} -gt 0 ]; then
        log "building the datastore images (${datastores[*]}), about a minute"
        "$SCRIPTS_DIR/build-base-images.sh" "${datastores[@]}" >&2
    fi
}

cmd_up() {
    podman_service_start
    export DOCKER_HOST=unix://$PODMAN_SOCK
    require_images
    local t0=$SECONDS backend_port frontend_port

    compose up -d --no-deps --no-build postgres redis
    wait_health postgres
    wait_health redis

    log "migrate: shop-migrate in a one-off container"
    if ! compose run --rm --no-deps migrate; then
        fail "migrations failed (see the output above); backend not started"
    fi

    compose up -d --no-deps --no-build backend
    backend_port=$(published_port backend 8000)
    wait_http backend "http://127.0.0.1:$backend_port/readyz"

    compose up -d --no-deps --no-build frontend
    frontend_port=$(published_port frontend 8080)
    wait_http frontend "http://127.0.0.1:$frontend_port/nginx-health"
    wait_http frontend "http://127.0.0.1:$frontend_port/api/categories"

    log "stack up in $((SECONDS - t0)) s (project ${COMPOSE_PROJECT_NAME:-from .env})"
    echo "storefront: http://127.0.0.1:$frontend_port/   backend: http://127.0.0.1:$backend_port/"
    echo "DOCKER_HOST=unix://$PODMAN_SOCK docker-compose -f compose.yaml -f compose.podman.yaml ps|logs|down"
}

cmd_seed() {
    podman_service_start
    export DOCKER_HOST=unix://$PODMAN_SOCK
    compose run --rm --no-deps seed
}

cmd_down() {
    local keep=0 args=() arg
    for arg in "$@"; do
        case $arg in
            --keep-service) keep=1 ;;
            -v | --volumes) args+=(-v) ;;
            *) fail "down: unknown option '$arg' (-v, --keep-service)" ;;
        esac
    done
    podman_service_start
    export DOCKER_HOST=unix://$PODMAN_SOCK
    compose --profile seed down --remove-orphans -t 20 "${args[@]+"${args[@]}"}"
    [ "$keep" = 1 ] || podman_service_stop
}

case ${1:-up} in
    up) cmd_up ;;
    seed) cmd_seed ;;
    down) shift; cmd_down "$@" ;;
    ps | logs)
        podman_service_start
        export DOCKER_HOST=unix://$PODMAN_SOCK
        compose "$@"
        ;;
    -h | --help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
    *) fail "unknown command '$1' (up, seed, down [-v], ps, logs)" ;;
esac
