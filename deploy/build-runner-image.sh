#!/usr/bin/env bash
# Builds the shop-ops run image (deploy/Dockerfile) with podman, once per source state.
#
# usage: deploy/build-runner-image.sh [--force]
#
# Prints the image reference on stdout (the last line), logs on stderr, and writes
# .build/runner/image.env (RUNNER_IMAGE=...). Tags: localhost/shop-ops-runner:<version>-<sha>
# and localhost/shop-ops-runner:local.
#
# Idempotent: the source hash (deploy/Dockerfile, this script, pyproject.toml, shop_ops/,
# config/ and the base image's id) is stored in the label io.shop-ops.runner.source; when an
# image with that label exists, nothing is built. Otherwise the wheels of the repository's
# shop-ops distribution and all its dependencies are built on the host with the image's
# Python release (scripts/host-wheels.sh), from a copy of the sources (no build/ or egg-info
# left in the repository), and installed inside the image with `pip install --no-index`.
#
# Environment: RUNNER_BASE_IMAGE (default localhost/shop-base-python:bookworm, built by
# scripts/build-base-images.sh), WHEEL_PYTHON (default: the host python matching the image's).
set -euo pipefail

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$DEPLOY_DIR/.." && pwd)
# shellcheck source=scripts/podman-env.sh
source "$ROOT/scripts/podman-env.sh"
# shellcheck source=scripts/host-wheels.sh
source "$ROOT/scripts/host-wheels.sh"

BASE_IMAGE=${RUNNER_BASE_IMAGE:-localhost/shop-base-python:bookworm}
REPO=localhost/shop-ops-runner
WORK=$ROOT/.build/runner

die() { echo "build-runner-image: error: $*" >&2; exit 1; }
log() { echo "build-runner-image: $*" >&2; }

FORCE=0
for arg in "$@"; do
    case $arg in
        --force) FORCE=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (see --help)" ;;
    esac
done

command -v podman >/dev/null || die "podman is not installed"
BASE_ID=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) ||
    die "base image $BASE_IMAGE is missing: run scripts/build-base-images.sh python (or set RUNNER_BASE_IMAGE)"

mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock 9

VERSION=$(tr -d '[:space:]' <"$ROOT/VERSION")
GIT_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
TAG=$VERSION-$GIT_COMMIT
REF=$REPO:$TAG

# Everything that decides the image's content, in a stable order.
SOURCE_HASH=$(
    cd "$ROOT"
    {
        printf 'base %s\n' "$BASE_ID"
        find deploy/Dockerfile deploy/build-runner-image.sh scripts/host-wheels.sh pyproject.toml VERSION config shop_ops \
            -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 |
            LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
)

write_env() {
    printf 'RUNNER_IMAGE=%s\n' "$1" >"$WORK/image.env.tmp"
    mv -f "$WORK/image.env.tmp" "$WORK/image.env"
}

if [ "$FORCE" = 0 ]; then
    existing=$(podman images --noheading --format '{{.Id}}' --filter "label=io.shop-ops.runner.source=$SOURCE_HASH" |
        head -n 1)
    if [ -n "$existing" ]; then
        podman tag "$existing" "$REF" "$REPO:local"
        log "up to date: $REF (source $SOURCE_HASH)"
        write_env "$REF"
        echo "$REF"
        exit 0
    fi
fi

t0=$SECONDS
CONTEXT=$WORK/context
SRC=$WORK/src
rm -rf "$CONTEXT" "$SRC"
mkdir -p "$CONTEXT" "$SRC"
cp "$ROOT/pyproject.toml" "$SRC/"
tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -cf - shop_ops | tar -C "$SRC" -xf -
cp -r "$ROOT/config" "$CONTEXT/config"

py=$(wheel_python_for "$BASE_IMAGE") || die "no interpreter for the runner's wheels (see above)"
log "pip wheel: shop-ops and its dependencies ($py)"
host_wheels "$py" "$SRC" "$CONTEXT/wheels" "$WORK/wheels.log" || die "runner wheels failed (see above)"
rm -rf "$SRC"
wheels_s=$((SECONDS - t0))
log "$(find "$CONTEXT/wheels" -name '*.whl' | wc -l) wheels ($wheels_s s)"

log "podman build $REF (base $BASE_IMAGE)"
podman_build_replace "$WORK/build.log" "$DEPLOY_DIR/Dockerfile" "$CONTEXT" "$REF" "$REPO:local" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg VERSION="$VERSION" --build-arg GIT_COMMIT="$GIT_COMMIT" \
    --build-arg SOURCE_HASH="$SOURCE_HASH" || die "podman build failed (log: $WORK/build.log)"
# Of older commits' images (~600 MB each) the newest KEEP_OLD stay, for runs still using them.
KEEP_OLD=${RUNNER_KEEP_OLD:-2}
current=$(podman image inspect --format '{{.Id}}' "$REF")
for id in $(podman images --quiet --no-trunc "$REPO" | sort -u); do
    [ "${id#sha256:}" = "$current" ] || podman image inspect --format '{{.Created.Unix}} {{.Id}}' "$id"
done | sort -rn | tail -n +"$((KEEP_OLD + 1))" | while read -r _ stale; do
    podman rmi "$stale" >/dev/null 2>&1 || true
done

user=$(podman image inspect --format '{{.Config.User}}' "$REF")
case ${user%%:*} in
    '' | 0 | root) die "$REF runs as root (USER '$user')" ;;
esac
size=$(podman image inspect --format '{{.Size}}' "$REF")
log "built $REF: $(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1000000 }') MB, user $user," \
    "source $SOURCE_HASH, $((SECONDS - t0)) s (wheels $wheels_s s)"
write_env "$REF"
echo "$REF"
