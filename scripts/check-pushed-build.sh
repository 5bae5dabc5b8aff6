#!/usr/bin/env bash
# Runs the images' blocking checks on a build CI pushed (job check_pushed_build) and follows the run: the pipeline
# adds the release tag <version> when they pass, and registry_push_sensor then releases it to staging. What the
# main workflow's self-hosted job runs after `make push-build` (`make check-pushed-build`).
#
# usage: BUILD_TAG=<version>-<sha> scripts/check-pushed-build.sh
#   BUILD_TAG                  the pushed tag (push-build's output; default: BUILD_TAG of .build/pushed.env)
#   CHECK_PUSHED_BUILD_CONFIG  a run config file to use instead of the one made here
#   SHOP_OPS_DAGSTER_URL, SHOP_OPS_DAGSTER_TOKEN: see scripts/dagster-job.sh
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${BUILD_TAG:-}" ] && [ -f "$ROOT/.build/pushed.env" ]; then
    BUILD_TAG=$(sed -n 's/^BUILD_TAG=//p' "$ROOT/.build/pushed.env")
fi
[ -n "${BUILD_TAG:-}" ] || { echo "check-pushed-build: BUILD_TAG is not set (the <version>-<sha> that push-build pushed)" >&2; exit 2; }
# A tag as build-images.sh makes it: <version>-<sha>, nothing a shell or JSON would read as more.
[[ $BUILD_TAG =~ ^[0-9A-Za-z][0-9A-Za-z._-]*-[0-9a-f]{7,40}$ ]] ||
    { echo "check-pushed-build: BUILD_TAG '$BUILD_TAG' is not <version>-<sha>" >&2; exit 2; }
config=${CHECK_PUSHED_BUILD_CONFIG:-}
if [ -z "$config" ]; then
    config=$(mktemp)
    trap 'rm -f "$config"' EXIT
    # check_pushed_build's run config (its config mapping hands pushed_tag to both images assets, which then judge
    # the pushed build instead of building one): shop_ops.assets.images.pushed_build_launch.
    printf '{"pushed_tag": "%s"}\n' "$BUILD_TAG" >"$config"
fi
"$ROOT/scripts/dagster-job.sh" check_pushed_build "$config" --tag "images/pushed_tag=$BUILD_TAG"
