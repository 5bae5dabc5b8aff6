#!/usr/bin/env bash
# Builds the shop's backend and frontend images with podman, from the locally built bases.
#
# usage: scripts/build-images.sh [--prepare-only] [backend] [frontend]      (default: both)
#   --prepare-only   only the host-side steps (base images, wheels, bundle): what the
#                    pipeline's images assets call before they build through the Docker API
#
# Steps: base images if missing (build-base-images.sh) -> backend wheels on the host
# (pip wheel, into app/.build/wheels, unless they are of the same sources and interpreter:
# scripts/host-wheels.sh) -> frontend bundle if frontend/dist is missing or
# older than its sources (npm ci && npm run build) -> podman build --format docker (keeps
# HEALTHCHECK) -> checks: HEALTHCHECK present, non-root user, size budget.
#
# Tags: localhost/shop-backend:<version>-<sha> and localhost/shop-frontend:<version>-<sha>
# (version from ./VERSION, sha = git rev-parse --short HEAD, "unknown" before the first
# commit), plus the moving local tag :local that compose.yaml uses by default.
# Writes .build/images.env (BACKEND_IMAGE=..., FRONTEND_IMAGE=...) and .build/images.json
# (sizes, layers, seconds) for the next steps.
#
# Environment:
#   SHOP_VERSION, GIT_COMMIT          override the version and the commit
#   BACKEND_BASE_IMAGE                default localhost/shop-base-python:bookworm
#   FRONTEND_BASE_IMAGE               default localhost/shop-base-nginx:bookworm
#   WHEEL_PYTHON                      host interpreter for pip wheel (default: the one whose
#                                     version equals the base image's python; scripts/host-wheels.sh)
#   FRONTEND_DIST                     use this built bundle instead of frontend/dist
#   BACKEND_MAX_MB=500 FRONTEND_MAX_MB=100   size budgets; a bigger image fails the build
set -Eeuo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/podman-env.sh
source "$SCRIPTS_DIR/podman-env.sh"
# shellcheck source=scripts/host-wheels.sh
source "$SCRIPTS_DIR/host-wheels.sh"
ROOT=$SHOP_OPS_ROOT
BUILD_DIR=$ROOT/.build
LOG_DIR=$BUILD_DIR/logs
mkdir -p "$LOG_DIR"
# One build at a time per clone (the wheel dir, logs and tags are shared); a caller that
# holds this lock already says so in SHOP_OPS_BUILD_LOCK_HELD.
if [ -z "${SHOP_OPS_BUILD_LOCK_HELD:-}" ]; then
    exec 9>"$BUILD_DIR/.build-images.lock"
    flock 9
fi

fail() {
    echo "build-images: error: $*" >&2
    exit 1
}
trap 'echo "build-images: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR
log() { echo "build-images: $*" >&2; }

TARGETS=()
PREPARE_ONLY=""
for arg in "$@"; do
    case $arg in
        backend | frontend) TARGETS+=("$arg") ;;
        --prepare-only) PREPARE_ONLY=1 ;;
        -h | --help) sed -n '2,/^set -Eeuo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) fail "unknown argument '$arg' (expected backend and/or frontend)" ;;
    esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(backend frontend)
wants() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

BACKEND_BASE_IMAGE=${BACKEND_BASE_IMAGE:-localhost/shop-base-python:bookworm}
FRONTEND_BASE_IMAGE=${FRONTEND_BASE_IMAGE:-localhost/shop-base-nginx:bookworm}
BACKEND_MAX_MB=${BACKEND_MAX_MB:-500}
FRONTEND_MAX_MB=${FRONTEND_MAX_MB:-100}

# ---------------------------------------------------------------- version and commit
[ -s "$ROOT/VERSION" ] || fail "$ROOT/VERSION is missing or empty"
VERSION=${SHOP_VERSION:-$(tr -d '[:space:]' <"$ROOT/VERSION")}
[[ $VERSION =~ ^[0-9A-Za-z][0-9A-Za-z._-]*$ ]] || fail "version '$VERSION' is not usable in an image tag"
GIT_COMMIT=${GIT_COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
TAG=$VERSION-$GIT_COMMIT
SOURCE_URL=$(git -C "$ROOT" remote get-url origin 2>/dev/null | sed -E 's#://[^/@]+@#://#' || true)
SOURCE_URL=${SOURCE_URL:-unknown}
if [ "$GIT_COMMIT" != unknown ] && [ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    log "warning: uncommitted changes: the images carry them but are tagged $TAG"
fi

# ---------------------------------------------------------------- base images
local_bases=()
wants backend && [[ $BACKEND_BASE_IMAGE == localhost/shop-base-python:* ]] && local_bases+=(python)
wants frontend && [[ $FRONTEND_BASE_IMAGE == localhost/shop-base-nginx:* ]] && local_bases+=(nginx)
if [ ${#local_bases[@]} -gt 0 ]; then
    "$SCRIPTS_DIR/build-base-images.sh" "${local_bases[@]}" >"$LOG_DIR/base-images.log" ||
        fail "base images failed (see above and $LOG_DIR/base-images.log)"
fi
for base in $(wants backend && echo "$BACKEND_BASE_IMAGE") $(wants frontend && echo "$FRONTEND_BASE_IMAGE"); do
    podman image exists "$base" || fail "base image $base is not in local storage (nothing can be pulled here)"
done

declare -A SECONDS_OF
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------- backend wheels
build_wheels() {
    local py t0 src=$BUILD_DIR/backend-src wheels=$ROOT/app/.build/wheels
    t0=$(now)
    py=$(wheel_python_for "$BACKEND_BASE_IMAGE") || fail "no interpreter for the backend's wheels (see above)"
    # Build from a copy so setuptools' build/ and egg-info never land in app/.
    rm -rf "$src"
    mkdir -p "$src"
    tar -C "$ROOT/app" --exclude=./.build --exclude=./build --exclude='*.egg-info' \
        --exclude=__pycache__ --exclude=./Dockerfile --exclude=./.dockerignore -cf - . |
        tar -C "$src" -xf -
    log "pip wheel ./app with $py"
    host_wheels "$py" "$src" "$wheels" "$LOG_DIR/wheels.log" || fail "backend wheels failed (see above)"
    rm -rf "$src"
    SECONDS_OF[wheels]=$(elapsed "$t0")
    log "$(find "$wheels" -name '*.whl' | wc -l) wheels in app/.build/wheels (${SECONDS_OF[wheels]} s)"
}

# ---------------------------------------------------------------- frontend bundle
FRONTEND_CONTEXT=$ROOT/frontend
frontend_bundle() {
    local fe=$ROOT/frontend t0
    t0=$(now)
    if [ -n "${FRONTEND_DIST:-}" ]; then
        [ -f "$FRONTEND_DIST/index.html" ] || fail "FRONTEND_DIST=$FRONTEND_DIST has no index.html"
        FRONTEND_CONTEXT=$BUILD_DIR/frontend-context
        rm -rf "$FRONTEND_CONTEXT"
        mkdir -p "$FRONTEND_CONTEXT"
        cp -r "$fe/Dockerfile" "$fe/.dockerignore" "$fe/nginx" "$FRONTEND_CONTEXT/"
        cp -r "$FRONTEND_DIST" "$FRONTEND_CONTEXT/dist"
        log "frontend bundle: $FRONTEND_DIST (FRONTEND_DIST)"
        return
    fi
    [ -f "$fe/package.json" ] || fail "frontend/package.json is missing: nothing to build (or set FRONTEND_DIST)"
    local stale=""
    if [ ! -f "$fe/dist/index.html" ]; then
        stale="frontend/dist is missing"
    else
        local newer
        newer=$(find "$fe/src" "$fe/public" "$fe/index.html" "$fe/package.json" "$fe/package-lock.json" \
            "$fe"/vite.config.* "$fe"/tsconfig*.json -newer "$fe/dist/index.html" -type f 2>/dev/null |
            head -n 1 || true)
        [ -n "$newer" ] && stale="${newer#"$ROOT"/} is newer than frontend/dist"
    fi
    if [ -z "$stale" ]; then
        log "frontend bundle: frontend/dist is up to date"
        return
    fi
    command -v npm >/dev/null || fail "npm is not installed ($stale)"
    log "frontend bundle: $stale; building"
    if [ ! -d "$fe/node_modules" ] || [ "$fe/package-lock.json" -nt "$fe/node_modules/.package-lock.json" ]; then
        (cd "$fe" && npm ci --no-audit --no-fund) >"$LOG_DIR/npm-ci.log" 2>&1 ||
            { tail -n 30 "$LOG_DIR/npm-ci.log" >&2; fail "npm ci failed (log: $LOG_DIR/npm-ci.log)"; }
    fi
    (cd "$fe" && npm run build) >"$LOG_DIR/npm-build.log" 2>&1 ||
        { tail -n 30 "$LOG_DIR/npm-build.log" >&2; fail "npm run build failed (log: $LOG_DIR/npm-build.log)"; }
    [ -f "$fe/dist/index.html" ] || fail "npm run build produced no frontend/dist/index.html"
    SECONDS_OF[bundle]=$(elapsed "$t0")
    log "frontend bundle built (${SECONDS_OF[bundle]} s)"
}

# ---------------------------------------------------------------- images
build_image() {
    local name=$1 context=$2 base=$3 ref=localhost/shop-$1:$TAG t0
    t0=$(now)
    log "podman build $ref (base $base)"
    podman_build_replace "$LOG_DIR/build-$name.log" "$context/Dockerfile" "$context" "$ref" \
        "localhost/shop-$name:local" --build-arg BASE_IMAGE="$base" --build-arg VERSION="$VERSION" \
        --build-arg GIT_COMMIT="$GIT_COMMIT" --build-arg SOURCE_URL="$SOURCE_URL" ||
        fail "podman build of $ref failed (log: $LOG_DIR/build-$name.log)"
    SECONDS_OF[$name]=$(elapsed "$t0")
}

# check_image NAME MAX_MB: HEALTHCHECK kept, numeric non-root user, labels, size budget.
check_image() {
    local name=$1 max_mb=$2 ref=localhost/shop-$1:$TAG health user label_version label_revision size layers
    health=$(podman image inspect --format '{{if .HealthCheck}}{{json .HealthCheck.Test}}{{end}}' "$ref")
    user=$(podman image inspect --format '{{.Config.User}}' "$ref")
    label_version=$(podman image inspect --format '{{index .Labels "org.opencontainers.image.version"}}' "$ref")
    label_revision=$(podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}}' "$ref")
    size=$(podman image inspect --format '{{.Size}}' "$ref")
    layers=$(podman image inspect --format '{{len .RootFS.Layers}}' "$ref")
    [ -n "$health" ] || fail "$ref has no HEALTHCHECK (built without --format docker?)"
    case ${user%%:*} in
        '' | 0 | root) fail "$ref runs as root (USER '${user}')" ;;
        *[!0-9]*) fail "$ref: USER '$user' is not numeric (Kubernetes/ECS runAsNonRoot needs a UID)" ;;
    esac
    if [ "$label_version" != "$VERSION" ] || [ "$label_revision" != "$GIT_COMMIT" ]; then
        fail "$ref: labels version/revision are '$label_version'/'$label_revision'"
    fi
    SIZE_MB[$name]=$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1000000 }')
    LAYERS[$name]=$layers
    USER_OF[$name]=$user
    awk -v s="${SIZE_MB[$name]}" -v m="$max_mb" 'BEGIN { exit !(s <= m) }' ||
        fail "$ref is ${SIZE_MB[$name]} MB, over its budget of $max_mb MB"
}

if [ -n "$PREPARE_ONLY" ]; then
    if wants backend; then build_wheels; fi
    if wants frontend; then frontend_bundle; fi
    log "prepared: ${TARGETS[*]}"
    exit 0
fi

declare -A SIZE_MB LAYERS USER_OF
if wants backend; then
    build_wheels
    build_image backend "$ROOT/app" "$BACKEND_BASE_IMAGE"
    check_image backend "$BACKEND_MAX_MB"
fi
if wants frontend; then
    frontend_bundle
    build_image frontend "$FRONTEND_CONTEXT" "$FRONTEND_BASE_IMAGE"
    check_image frontend "$FRONTEND_MAX_MB"
fi

# ---------------------------------------------------------------- report
printf '\n%-26s %-22s %8s %7s %8s %s\n' IMAGE TAG "SIZE MB" LAYERS SECONDS USER
for name in "${TARGETS[@]}"; do
    printf '%-26s %-22s %8s %7s %8s %s\n' "localhost/shop-$name" "$TAG" "${SIZE_MB[$name]}" \
        "${LAYERS[$name]}" "${SECONDS_OF[$name]}" "${USER_OF[$name]}"
done
[ -n "${SECONDS_OF[wheels]:-}" ] && printf '(wheels %s s' "${SECONDS_OF[wheels]}" &&
    { [ -n "${SECONDS_OF[bundle]:-}" ] && printf ', frontend bundle %s s' "${SECONDS_OF[bundle]}"; printf ')\n'; }

# images.env keeps the entry of an image that was not rebuilt this time.
{
    for name in backend frontend; do
        if wants "$name"; then
            printf '%s_IMAGE=localhost/shop-%s:%s\n' "${name^^}" "$name" "$TAG"
        else
            grep -s "^${name^^}_IMAGE=" "$BUILD_DIR/images.env" || true
        fi
    done
} >"$BUILD_DIR/images.env.tmp"
mv -f "$BUILD_DIR/images.env.tmp" "$BUILD_DIR/images.env"
{
    echo '{'
    printf '  "version": "%s", "git_commit": "%s", "tag": "%s",\n' "$VERSION" "$GIT_COMMIT" "$TAG"
    echo '  "images": ['
    sep=""
    for name in "${TARGETS[@]}"; do
        printf '%s    {"name": "%s", "ref": "localhost/shop-%s:%s", "size_mb": %s, "layers": %s, "build_seconds": %s}' \
            "$sep" "$name" "$name" "$TAG" "${SIZE_MB[$name]}" "${LAYERS[$name]}" "${SECONDS_OF[$name]}"
        sep=$',\n'
    done
    printf '\n  ]\n}\n'
} >"$BUILD_DIR/images.json"
log "wrote .build/images.env and .build/images.json"
