#!/usr/bin/env bash
# Builds the shop-ops run image (deploy/Dockerfile) with podman, once per source state.
#
# usage: deploy/build-runner-image.sh [--force]
#
# Prints the image reference on stdout (the last line), logs on stderr, and writes
# .build/runner/image.env (RUNNER_IMAGE=...). Tags: localhost/shop-ops-runner:<version>-<sha>
# and localhost/shop-ops-runner:local.
#
# Idempotent: the source hash (deploy/Dockerfile, this script, scripts/host-wheels.sh,
# scripts/checkov-requirements.txt, scripts/sslyze-requirements.txt, pyproject.toml, VERSION, shop_ops/, config/, loadtests/,
# infra/terraform/ and infra/pricing/, the base image's id and the Debian packages' names and
# versions) is stored in the label io.shop-ops.runner.source; when an image with that label
# exists, nothing is built. Otherwise the wheels of the repository's shop-ops distribution and
# all its dependencies are built on the host with the image's Python release
# (scripts/host-wheels.sh), from a copy of the sources (no build/ or egg-info left in the
# repository), and installed inside the image with `pip install --no-index`.
#
# The scanners that pin what /opt/venv must not get each go into a virtualenv of their own, from
# wheels built the same way: checkov (scripts/checkov-requirements.txt, the pin `make install`
# reads too) in /opt/checkov (SHOP_OPS_CHECKOV), sslyze (scripts/sslyze-requirements.txt) in
# /opt/sslyze (SHOP_OPS_SSLYZE); wheels kept in .build/runner/wheels-<name>. Two of the Dockerfile's
# stages are built as images of their own, each once per key: `scanners`,
# localhost/shop-ops-scanners:<key> (the base image's id, the pin files, the stage's text; ~290 MB),
# and `runtime`, localhost/shop-ops-runtime:<key> (the scanners key, the Debian packages, the
# dependency wheels' names, the stage's text: the packages, the dagster user and /opt/venv with
# every dependency). The run image's final stage starts from the runtime image (RUNTIME_IMAGE) and
# installs only the shop_ops wheel, so a rebuild after a change of shop_ops/ (or --force) builds a
# layer of a few MB. Both are also saved as archives, $SHOP_OPS_CACHE/runner/<stage>-<key>.tar,
# which a fresh clone loads instead of building (image storage is per clone, like the base
# images'); their older images are removed (their layers stay while a run image uses them).
# infra/terraform and infra/pricing are copied to /opt/shop-ops/infra (SHOP_OPS_INFRA) without .terraform/ folders
# and Terraform state files.
#
# Debian packages (RUNNER_DEBS: PostgreSQL 15 client and server programs, pgBackRest, Redis): nothing
# is downloaded inside a build (podman_build_replace: --network none), so the .deb files come
# from the host's apt, which must be Debian of the base image's release (bookworm). The
# packages get the versions installed on the host (else apt's candidate); `apt-get -s` against
# the base image's dpkg status adds the dependencies the base lacks (no recommends). The files
# are fetched with `apt-get download` (verified against the host's signed apt lists), kept in
# $SHOP_OPS_CACHE/runner-debs, and installed with dpkg in the image. When the host's lists
# do not have a version any more: apt-get update.
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
# redis-server and redis-tools: the cart store's RDB snapshot (redis-cli --rdb) and its restore test
# (a scratch redis-server) in nightly_backup.
RUNNER_DEBS=(postgresql-client-15 postgresql-15 pgbackrest redis-server redis-tools)
DEB_CACHE=$SHOP_OPS_CACHE/runner-debs
CHECKOV_REQUIREMENTS=scripts/checkov-requirements.txt
SSLYZE_REQUIREMENTS=scripts/sslyze-requirements.txt
SCANNERS_REPO=localhost/shop-ops-scanners
RUNTIME_REPO=localhost/shop-ops-runtime
# What of infra/ the image carries; never .terraform/ (providers, modules) nor state files.
INFRA_DIRS=(infra/terraform infra/pricing)

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
command -v apt-get >/dev/null || die "apt-get is not installed: the image's Debian packages come from the host's apt"
BASE_ID=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) ||
    die "base image $BASE_IMAGE is missing: run scripts/build-base-images.sh python (or set RUNNER_BASE_IMAGE)"

mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock 9

# base_dpkg_status: the path of a copy of the base image's /var/lib/dpkg/status (cached per base
# image id), after checking that the host runs the base image's Debian release.
base_dpkg_status() {
    local dir=$WORK/base-dpkg/$BASE_ID base_codename host_codename
    if [ ! -s "$dir/status" ]; then
        rm -rf "$WORK/base-dpkg"
        mkdir -p "$dir"
        podman run --rm --network none --entrypoint sh "$BASE_IMAGE" \
            -c '. /etc/os-release && echo "$VERSION_CODENAME" && cat /var/lib/dpkg/status' >"$dir/out" ||
            { echo "cannot read the dpkg status of $BASE_IMAGE" >&2; return 1; }
        head -n 1 "$dir/out" >"$dir/codename"
        tail -n +2 "$dir/out" >"$dir/status"
        rm -f "$dir/out"
    fi
    base_codename=$(cat "$dir/codename")
    # shellcheck disable=SC1091
    host_codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    if [ "$host_codename" != "$base_codename" ]; then
        echo "the host runs Debian '${host_codename:-?}', $BASE_IMAGE '$base_codename': the image's packages come from the host's apt" >&2
        return 1
    fi
    echo "$dir/status"
}

# resolve_debs STATUS: "name=version" lines, sorted, of everything to install: RUNNER_DEBS at the
# host's installed versions (else apt's candidate) and the dependencies STATUS lacks.
resolve_debs() {
    local status=$1 pkg installed wanted=() out
    for pkg in "${RUNNER_DEBS[@]}"; do
        installed=$(dpkg-query -W -f '${db:Status-Status} ${Version}' "$pkg" 2>/dev/null || true)
        case $installed in
            "installed "*) wanted+=("$pkg=${installed#installed }") ;;
            *) wanted+=("$pkg") ;;
        esac
    done
    out=$(apt-get -s -q -o Dir::State::status="$status" -o APT::Install-Recommends=false \
        -o APT::Install-Suggests=false install "${wanted[@]}" 2>&1) ||
        { printf '%s\n' "$out" | tail -n 20 >&2; echo "apt-get cannot resolve ${wanted[*]} (apt-get update?)" >&2; return 1; }
    # "Inst NAME (VERSION ...)", or "Inst NAME [OLD] (VERSION ...)" for an upgrade of the base's.
    printf '%s\n' "$out" | awk '$1 == "Inst" { v = ($3 ~ /^\[/) ? $4 : $3; sub(/^\(/, "", v); print $2 "=" v }' |
        LC_ALL=C sort
}

# fetch_debs DIR NAME=VERSION...: the .deb files into DIR through $DEB_CACHE (files whose sha256
# matches the host's apt lists are reused; the rest is downloaded); the cache keeps only these.
fetch_debs() {
    local dir=$1 uris file sum missing=() keep=() name version
    shift
    uris=$(apt-get download --print-uris "$@" 2>&1) ||
        { printf '%s\n' "$uris" | tail -n 20 >&2; echo "apt-get download --print-uris failed (apt-get update?)" >&2; return 1; }
    mkdir -p "$DEB_CACHE" "$dir"
    while read -r _ file _ sum; do
        keep+=("$file")
        [ -f "$DEB_CACHE/$file" ] && [ "$(sha256sum <"$DEB_CACHE/$file" | cut -d' ' -f1)" = "${sum#SHA256:}" ] && continue
        # name_version_arch.deb, the version's epoch colon written %3a
        name=${file%%_*}
        version=${file#*_}
        version=${version%_*}
        missing+=("$name=${version//%3a/:}")
    done < <(printf '%s\n' "$uris" | grep "^'")
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get download: ${#missing[@]} of $# packages"
        (cd "$DEB_CACHE" && apt-get download -q "${missing[@]}") >>"$WORK/debs.log" 2>&1 ||
            { tail -n 20 "$WORK/debs.log" >&2; echo "apt-get download failed (log: $WORK/debs.log)" >&2; return 1; }
    fi
    for file in "${keep[@]}"; do
        [ -f "$DEB_CACHE/$file" ] || { echo "apt-get download left no $file" >&2; return 1; }
        cp -l "$DEB_CACHE/$file" "$dir/" 2>/dev/null || cp "$DEB_CACHE/$file" "$dir/"
    done
    # Older versions go (only this script writes here).
    find "$DEB_CACHE" -maxdepth 1 -name '*.deb' -type f | while read -r file; do
        case " ${keep[*]} " in *" ${file##*/} "*) ;; *) rm -f "$file" ;; esac
    done
}

BASE_STATUS=$(base_dpkg_status) || die "cannot resolve the image's Debian packages (see above)"
mapfile -t DEBS < <(resolve_debs "$BASE_STATUS")
[ ${#DEBS[@]} -gt 0 ] || die "cannot resolve the image's Debian packages ${RUNNER_DEBS[*]} (see above)"

VERSION=$(tr -d '[:space:]' <"$ROOT/VERSION")
GIT_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
TAG=$VERSION-$GIT_COMMIT
REF=$REPO:$TAG

# Everything that decides the image's content, in a stable order.
SOURCE_HASH=$(
    cd "$ROOT"
    {
        printf 'base %s\n' "$BASE_ID"
        printf 'deb %s\n' "${DEBS[@]}"
        find deploy/Dockerfile deploy/build-runner-image.sh scripts/host-wheels.sh "$CHECKOV_REQUIREMENTS" "$SSLYZE_REQUIREMENTS" \
            pyproject.toml VERSION config loadtests shop_ops "${INFRA_DIRS[@]}" \
            -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*/.terraform/*' ! -name '*.tfstate' \
            ! -name '*.tfstate.*' -print0 |
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
cp -r "$ROOT/loadtests" "$CONTEXT/loadtests"
tar -C "$ROOT" --exclude=.terraform --exclude='*.tfstate' --exclude='*.tfstate.*' -cf - "${INFRA_DIRS[@]}" |
    tar -C "$CONTEXT" -xf -
: >"$WORK/debs.log"
debs_t0=$SECONDS
fetch_debs "$CONTEXT/debs" "${DEBS[@]}" || die "the image's Debian packages could not be fetched (see above)"
log "${#DEBS[@]} Debian packages, $(du -sm "$CONTEXT/debs" | cut -f1) MB ($((SECONDS - debs_t0)) s)"

py=$(wheel_python_for "$BASE_IMAGE") || die "no interpreter for the runner's wheels (see above)"
log "pip wheel: shop-ops and its dependencies ($py)"
host_wheels "$py" "$SRC" "$CONTEXT/wheels" "$WORK/wheels.log" || die "runner wheels failed (see above)"
rm -rf "$SRC"
# shop_ops's own wheel apart (wheels-shop-ops/, with pip's): wheels/ keeps its dependencies for the runtime stage.
mkdir -p "$CONTEXT/wheels-shop-ops"
mv "$CONTEXT"/wheels/shop_ops-*.whl "$CONTEXT/wheels-shop-ops/" || die "pip wheel left no shop_ops wheel (log: $WORK/wheels.log)"
cp "$CONTEXT"/wheels/pip-*.whl "$CONTEXT/wheels-shop-ops/" || die "pip wheel left no pip wheel (log: $WORK/wheels.log)"
wheels_s=$((SECONDS - t0))
log "$(find "$CONTEXT/wheels" -name '*.whl' | wc -l) dependency wheels ($wheels_s s)"

# stage_key NAME LINES...: a key for the Dockerfile's stage NAME: its text and LINES (what else decides it).
stage_key() {
    local name=$1 stage
    shift
    stage=$(sed -n "/^FROM .* AS $name\$/,/^FROM /p" "$DEPLOY_DIR/Dockerfile")
    [ -n "$stage" ] || { echo "deploy/Dockerfile has no 'AS $name' stage" >&2; return 1; }
    { printf '%s\n' "$stage" "$@"; } | sha256sum | cut -c1-16
}

# cached_stage NAME REF BUILD_FUNCTION: REF (localhost/shop-ops-NAME:<key>) present in image storage: from
# storage, else from its archive in $SHOP_OPS_CACHE/runner (image storage is per clone; a fresh clone
# loads the archive in seconds), else built by BUILD_FUNCTION and kept as the archive (older ones go).
cached_stage() {
    local name=$1 ref=$2 build=$3 archive stage_t0=$SECONDS
    archive=$SHOP_OPS_CACHE/runner/$name-${ref##*:}.tar
    if podman image exists "$ref"; then
        log "$name image up to date: $ref"
    elif [ -f "$archive" ] && podman load -q -i "$archive" >/dev/null && podman image exists "$ref"; then
        log "$name image loaded from $archive ($((SECONDS - stage_t0)) s)"
    else
        "$build" || return 1
        log "built $ref ($((SECONDS - stage_t0)) s)"
        mkdir -p "${archive%/*}"
        rm -f "${archive%/*}/$name"-*.tar
        podman save -q --format docker-archive -o "$archive.tmp" "$ref" && mv -f "$archive.tmp" "$archive" ||
            log "note: could not keep $archive (the next clone builds it)"
    fi
    podman tag "$ref" "localhost/shop-ops-$name:local"
}

# The scanners image (the Dockerfile's `scanners` stage: checkov and sslyze).
scanners_key=$(stage_key scanners "base $BASE_ID" "$(cat "$ROOT/$CHECKOV_REQUIREMENTS" "$ROOT/$SSLYZE_REQUIREMENTS")") ||
    die "cannot compute the scanners image's key"
SCANNERS_REF=$SCANNERS_REPO:$scanners_key
build_scanners() {
    local tool requirements
    for tool in checkov sslyze; do
        requirements=scripts/$tool-requirements.txt
        log "pip wheel: $tool ($py)"
        host_wheels_requirements "$py" "$ROOT/$requirements" "$WORK/wheels-$tool" "$WORK/wheels-$tool.log" ||
            die "$tool wheels failed (see above)"
        cp -al "$WORK/wheels-$tool" "$CONTEXT/wheels-$tool" 2>/dev/null ||
            { rm -rf "$CONTEXT/wheels-$tool" && cp -r "$WORK/wheels-$tool" "$CONTEXT/wheels-$tool"; }
        cp "$ROOT/$requirements" "$CONTEXT/wheels-$tool/requirements.txt"
    done
    log "podman build $SCANNERS_REF"
    podman_build_replace "$WORK/build-scanners.log" "$DEPLOY_DIR/Dockerfile" "$CONTEXT" "$SCANNERS_REF" \
        "$SCANNERS_REPO:local" --target scanners --build-arg BASE_IMAGE="$BASE_IMAGE" ||
        die "podman build of the scanners image failed (log: $WORK/build-scanners.log)"
}

# The runtime image (the `runtime` stage: the Debian packages, the dagster user, /opt/venv with the
# dependencies), from the scanners image; its key: the scanners', the packages' and the wheels' names.
runtime_key=$(stage_key runtime "scanners $scanners_key" "$(printf 'deb %s\n' "${DEBS[@]}")" \
    "$(cd "$CONTEXT/wheels" && find . -name '*.whl' | LC_ALL=C sort)") || die "cannot compute the runtime image's key"
RUNTIME_REF=$RUNTIME_REPO:$runtime_key
build_runtime() {
    cached_stage scanners "$SCANNERS_REF" build_scanners || return 1
    log "podman build $RUNTIME_REF"
    podman_build_replace "$WORK/build-runtime.log" "$DEPLOY_DIR/Dockerfile" "$CONTEXT" "$RUNTIME_REF" \
        "$RUNTIME_REPO:local" --target runtime --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg SCANNERS_IMAGE="$SCANNERS_REF" ||
        die "podman build of the runtime image failed (log: $WORK/build-runtime.log)"
}
cached_stage runtime "$RUNTIME_REF" build_runtime || die "no runtime image (see above)"

log "podman build $REF (from $RUNTIME_REF)"
podman_build_replace "$WORK/build.log" "$DEPLOY_DIR/Dockerfile" "$CONTEXT" "$REF" "$REPO:local" \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg SCANNERS_IMAGE="$SCANNERS_REF" \
    --build-arg RUNTIME_IMAGE="$RUNTIME_REF" --build-arg VERSION="$VERSION" \
    --build-arg GIT_COMMIT="$GIT_COMMIT" --build-arg SOURCE_HASH="$SOURCE_HASH" ||
    die "podman build failed (log: $WORK/build.log)"
# Of older commits' images (each a layer of a few MB over its runtime image) the newest KEEP_OLD
# stay, for runs still using them.
KEEP_OLD=${RUNNER_KEEP_OLD:-2}
current=$(podman image inspect --format '{{.Id}}' "$REF")
for id in $(podman images --quiet --no-trunc "$REPO" | sort -u); do
    [ "${id#sha256:}" = "$current" ] || podman image inspect --format '{{.Created.Unix}} {{.Id}}' "$id"
done | sort -rn | tail -n +"$((KEEP_OLD + 1))" | while read -r _ stale; do
    podman rmi "$stale" >/dev/null 2>&1 || true
done
# Older scanners and runtime images go (and those of the former checkov-only stage); their layers stay
# while a run image still starts from them.
for repo_and_kept in "$SCANNERS_REPO $SCANNERS_REF" "localhost/shop-ops-checkov -" "$RUNTIME_REPO $RUNTIME_REF"; do
    read -r repo kept <<<"$repo_and_kept"
    kept_id=$(podman image inspect --format '{{.Id}}' "$kept" 2>/dev/null || true)
    for id in $(podman images --quiet --no-trunc "$repo" | sort -u); do
        [ "${id#sha256:}" = "$kept_id" ] || podman rmi "$id" >/dev/null 2>&1 || true
    done
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
