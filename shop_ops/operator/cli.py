"""`shop-ops jobs ...` and `shop-ops github ...`: launch and follow Dagster jobs, name a deployment's approver.

Exit codes: 0 the run succeeded; 1 it failed, was cancelled or is still going at the timeout (one line on
stderr says which and why); 2 it could not be launched or asked (bad arguments, Dagster or GitHub not
answering). Tokens come from the environment only and are never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from shop_ops.operator.dagster_api import (
    DagsterApi,
    OperatorError,
    RunEvent,
    parse_tags,
    promote_run_config,
    verified_release,
)
from shop_ops.operator.github import deployment_approver

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
URL_ENV = "SHOP_OPS_DAGSTER_URL"
TOKEN_ENV = "SHOP_OPS_DAGSTER_TOKEN"  # a bearer token for a proxy in front of the webserver, if there is one


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The `jobs` and `github` subcommands of `shop-ops`."""
    jobs = sub.add_parser("jobs", help="launch Dagster jobs through its GraphQL API and follow them")
    actions = jobs.add_subparsers(dest="action", required=True)
    launch = actions.add_parser("launch", help="launch JOB, print its events, exit non-zero unless it succeeds")
    launch.add_argument("job")
    launch.add_argument("--config-json", metavar="FILE|-", help="run config as JSON (a file, or - for stdin)")
    launch.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a run tag (repeatable)")
    launch.add_argument("--timeout", type=float, default=3600, help="seconds to follow the run (default 3600)")
    promote = actions.add_parser(
        "promote-config", help="print promote_production's run config for a release verified on staging"
    )
    promote.add_argument("version")
    promote.add_argument("--approved-by", required=True, help="who approved the production deploy")
    for parser in (launch, promote):
        parser.add_argument(
            "--dagster-url", default=os.environ.get(URL_ENV, DEFAULT_DAGSTER_URL),
            help=f"the Dagster webserver (default ${URL_ENV} or {DEFAULT_DAGSTER_URL})",
        )  # fmt: skip
    github = sub.add_parser("github", help="GitHub Actions facts for CI steps")
    github_actions = github.add_subparsers(dest="action", required=True)
    approver = github_actions.add_parser(
        "approver", help="print who approved this workflow run's environment (GITHUB_* variables, GITHUB_TOKEN)"
    )
    approver.add_argument("--environment", default="production")


def _read_config(source: str | None, stdin: TextIO) -> dict[str, Any]:
    if source is None:
        return {}
    try:
        text = stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        config = json.loads(text)
    except OSError as exc:
        raise OperatorError(f"cannot read the run config {source}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise OperatorError(f"the run config {source} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise OperatorError(f"the run config {source} is not a JSON object")
    return config


def _print_event(event: RunEvent) -> None:
    print(event.line(), flush=True)


def run(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """Carry out one `jobs` or `github` command; returns the exit code."""
    try:
        if args.command == "github":
            env = os.environ
            missing = [n for n in ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_TOKEN") if not env.get(n)]
            if missing:
                raise OperatorError(f"{', '.join(missing)} not set: run inside a GitHub Actions job, pass GITHUB_TOKEN")
            login = deployment_approver(
                env.get("GITHUB_API_URL", "https://api.github.com"), env["GITHUB_REPOSITORY"], env["GITHUB_RUN_ID"],
                env["GITHUB_TOKEN"], args.environment,
            )  # fmt: skip
            print(login)
            return 0
        with DagsterApi(args.dagster_url, token=os.environ.get(TOKEN_ENV) or None) as api:
            if args.action == "promote-config":
                config = promote_run_config(verified_release(api, args.version), args.approved_by)
                print(json.dumps(config, indent=2))
                return 0
            config, tags = _read_config(args.config_json, stdin or sys.stdin), parse_tags(args.tag)
            run_id = api.launch(args.job, config, tags)
            print(f"launched {args.job} run {run_id}: {api.run_url(run_id)}", flush=True)
            outcome = api.follow(args.job, run_id, on_event=_print_event, timeout=args.timeout)
    except OperatorError as exc:
        print(f"shop-ops {args.command}: {exc}", file=sys.stderr)
        return 2
    if outcome.succeeded:
        print(outcome.summary())
        return 0
    print(f"shop-ops jobs: {outcome.summary()}", file=sys.stderr)
    return 1
