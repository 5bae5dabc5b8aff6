#!/usr/bin/env bash
# Launches a Dagster job of the code location through its GraphQL API and follows it to the end, tagged with who
# launched it: the step CI's self-hosted runner runs, and what a person runs from a machine that reaches Dagster.
#
# usage: scripts/dagster-job.sh JOB [CONFIG_JSON_FILE] [--tag KEY=VALUE ...]
# Environment: SHOP_OPS_DAGSTER_URL (default http://127.0.0.1:3000, `make run`'s), SHOP_OPS_DAGSTER_TOKEN (a bearer
# token for a proxy in front of the webserver, if any). In GitHub Actions the run is tagged with the workflow
# run's URL, the actor and the commit; elsewhere with the user's name.
# Exit status: `shop-ops jobs launch`'s (0 success, 1 the run failed, 2 it could not be launched).
set -Eeuo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOB=${1:?usage: scripts/dagster-job.sh JOB [CONFIG_JSON_FILE] [--tag KEY=VALUE ...]}
shift
CONFIG=()
if [ $# -gt 0 ] && [[ $1 != --* ]]; then
    CONFIG=(--config-json "$1")
    shift
fi
TAGS=()
if [ "${GITHUB_ACTIONS:-}" = true ]; then
    TAGS+=(--tag "shop-ops/launched-by=github-actions:${GITHUB_ACTOR:-unknown}")
    TAGS+=(--tag "github/run=${GITHUB_SERVER_URL:-https://github.com}/${GITHUB_REPOSITORY:-}/actions/runs/${GITHUB_RUN_ID:-}")
    TAGS+=(--tag "github/workflow=${GITHUB_WORKFLOW:-}" --tag "git/commit=${GITHUB_SHA:-}")
else
    TAGS+=(--tag "shop-ops/launched-by=${USER:-$(id -un)}")
    TAGS+=(--tag "git/commit=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)")
fi
exec "$ROOT/.venv/bin/shop-ops" jobs launch "$JOB" "${CONFIG[@]}" "${TAGS[@]}" "$@"
