#!/usr/bin/env bash
# Builds both images from this checkout and pushes them as <registry>/<repository>:<version>-<sha>: what the
# main workflow runs on every push to main (`make push-build`). It never adds the release tag <version>: the
# pipeline does, after the images' blocking checks pass (job check_pushed_build, `make check-pushed-build`).
#
# usage: scripts/push-build.sh
# Environment:
#   PUSH_REGISTRY          registry host[:port] (required): ECR's <account>.dkr.ecr.<region>.amazonaws.com, or a
#                          registry of your own (127.0.0.1:5055 for `make run`'s)
#   BACKEND_REPOSITORY     default shop/backend       FRONTEND_REPOSITORY   default shop/frontend
#   PUSH_TLS_VERIFY        true (default); false for a plain-HTTP registry on 127.0.0.1
#   REGISTRY_USER, REGISTRY_PASSWORD_FILE   credentials of a registry with htpasswd auth. For ECR (a host with
#                          .dkr.ecr. in it) the script logs in with `aws ecr get-login-password` instead, with the
#                          credentials the job has (in GitHub Actions: the OIDC delivery role)
#   and scripts/build-images.sh's own (SHOP_VERSION, GIT_COMMIT, BACKEND_BASE_IMAGE, FRONTEND_BASE_IMAGE, ...)
# Writes .build/pushed.env (BUILD_TAG, BACKEND_REF, FRONTEND_REF, BACKEND_DIGEST, FRONTEND_DIGEST) and, in GitHub
# Actions, `tag=<version>-<sha>` to the step's outputs for the next job.
set -Eeuo pipefail

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fail() {
    echo "push-build: error: $*" >&2
    exit 1
}
log() { echo "push-build: $*" >&2; }

REGISTRY=${PUSH_REGISTRY:-}
[ -n "$REGISTRY" ] || fail "PUSH_REGISTRY is not set: the registry to push to (host[:port])"
[[ $REGISTRY =~ ^[A-Za-z0-9.-]+(:[0-9]+)?$ ]] || fail "PUSH_REGISTRY '$REGISTRY' is not host[:port]"
BACKEND_REPOSITORY=${BACKEND_REPOSITORY:-shop/backend}
FRONTEND_REPOSITORY=${FRONTEND_REPOSITORY:-shop/frontend}
TLS_VERIFY=${PUSH_TLS_VERIFY:-true}
[[ $TLS_VERIFY == true || $TLS_VERIFY == false ]] || fail "PUSH_TLS_VERIFY is '$TLS_VERIFY', not true or false"

# shellcheck source=scripts/podman-env.sh
source "$SCRIPTS_DIR/podman-env.sh"
# Public base images (where they can be pulled, e.g. a GitHub-hosted runner: BACKEND_BASE_IMAGE=python:3.11-slim-bookworm)
# are pulled once; the local debootstrapped ones (the default) are build-images.sh's business.
for base in "${BACKEND_BASE_IMAGE:-}" "${FRONTEND_BASE_IMAGE:-}"; do
    if [ -n "$base" ] && [[ $base != localhost/* ]] && ! podman image exists "$base"; then
        log "podman pull $base"
        podman pull "$base" >&2 || fail "cannot pull the base image $base"
    fi
done
"$SCRIPTS_DIR/build-images.sh"
BUILD_DIR=$SHOP_OPS_ROOT/.build
# shellcheck disable=SC1091  # written by build-images.sh
source "$BUILD_DIR/images.env"
TAG=${BACKEND_IMAGE##*:}
[ "${FRONTEND_IMAGE##*:}" = "$TAG" ] || fail "the two images were built with different tags ($BACKEND_IMAGE, $FRONTEND_IMAGE)"

# Credentials in a file of this run only, removed on exit; never printed.
REGISTRY_AUTH_FILE=$(mktemp "$BUILD_DIR/.push-auth-XXXXXX.json")
export REGISTRY_AUTH_FILE
trap 'rm -f "$REGISTRY_AUTH_FILE"' EXIT
if [[ $REGISTRY == *.dkr.ecr.* ]]; then
    region=$(sed -E 's/.*\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com.*/\1/' <<<"$REGISTRY")
    command -v aws >/dev/null || fail "the aws CLI is needed to log in to ECR ($REGISTRY)"
    aws ecr get-login-password --region "$region" |
        podman login --tls-verify="$TLS_VERIFY" --username AWS --password-stdin "$REGISTRY" >/dev/null ||
        fail "login to $REGISTRY failed: does the job have the delivery role (OIDC, id-token: write)?"
elif [ -n "${REGISTRY_USER:-}" ]; then
    [ -r "${REGISTRY_PASSWORD_FILE:-}" ] || fail "REGISTRY_USER is set but REGISTRY_PASSWORD_FILE is not a readable file"
    podman login --tls-verify="$TLS_VERIFY" --username "$REGISTRY_USER" --password-stdin "$REGISTRY" \
        <"$REGISTRY_PASSWORD_FILE" >/dev/null || fail "login to $REGISTRY as $REGISTRY_USER failed"
fi

declare -A REF DIGEST
for role in backend frontend; do
    repository=BACKEND_REPOSITORY
    [ "$role" = frontend ] && repository=FRONTEND_REPOSITORY
    REF[$role]=$REGISTRY/${!repository}:$TAG
    digest_file=$(mktemp)
    log "podman push localhost/shop-$role:$TAG -> ${REF[$role]}"
    podman push --tls-verify="$TLS_VERIFY" --format v2s2 --digestfile "$digest_file" \
        "localhost/shop-$role:$TAG" "docker://${REF[$role]}" >&2 || fail "push of ${REF[$role]} failed"
    DIGEST[$role]=$(cat "$digest_file")
    rm -f "$digest_file"
done

{
    printf 'BUILD_TAG=%s\n' "$TAG"
    printf 'BACKEND_REF=%s\nBACKEND_DIGEST=%s\n' "${REF[backend]}" "${DIGEST[backend]}"
    printf 'FRONTEND_REF=%s\nFRONTEND_DIGEST=%s\n' "${REF[frontend]}" "${DIGEST[frontend]}"
} >"$BUILD_DIR/pushed.env"
if [ -n "${GITHUB_OUTPUT:-}" ]; then
    printf 'tag=%s\n' "$TAG" >>"$GITHUB_OUTPUT"
fi
log "pushed $TAG: ${REF[backend]}@${DIGEST[backend]}, ${REF[frontend]}@${DIGEST[frontend]}"
