#!/usr/bin/env bash
# Promotes a release verified on staging to production (job promote_production) and follows the run; approved_by is
# who approved it. What the production workflow's self-hosted job runs once a reviewer of the GitHub environment
# `production` approved (`make promote-production`).
#
# usage: RELEASE_VERSION=1.4.0 [APPROVED_BY=name] scripts/promote-production.sh
#   RELEASE_VERSION   the release version (its digests are the ones verified on staging, read from Dagster)
#   APPROVED_BY       who approved. In GitHub Actions it is read from the run's deployment review (GitHub's API,
#                     GITHUB_TOKEN with actions: read) and APPROVED_BY is not used; elsewhere it is required.
#   SHOP_OPS_DAGSTER_URL, SHOP_OPS_DAGSTER_TOKEN: see scripts/dagster-job.sh
# The release flow itself refuses a production deploy without approved_by or of digests not verified on staging.
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHOP_OPS=$ROOT/.venv/bin/shop-ops
fail() {
    echo "promote-production: $*" >&2
    exit 2
}
VERSION=${RELEASE_VERSION:-}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([.-][0-9A-Za-z.]+)?$ ]] || fail "RELEASE_VERSION '$VERSION' is not a release version (e.g. 1.4.0)"
if [ "${GITHUB_ACTIONS:-}" = true ]; then
    approver=$("$SHOP_OPS" github approver --environment production) || exit 2
else
    approver=${APPROVED_BY:-}
    [ -n "$approver" ] || fail "APPROVED_BY is not set: name who approved the production deploy"
fi
config=$(mktemp)
trap 'rm -f "$config"' EXIT
"$SHOP_OPS" jobs promote-config "$VERSION" --approved-by "$approver" >"$config"
echo "promote-production: $VERSION, approved by $approver"
"$ROOT/scripts/dagster-job.sh" promote_production "$config" --tag "approved_by=$approver"
