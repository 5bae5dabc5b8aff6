"""`shop-ops` operator commands: launch and follow Dagster jobs, and act directly on an environment's services.

- Launching (a run of the existing job through Dagster's API, as the UI launches it, tagged with the operator):
  `jobs launch`, `deploy`, `migrate`, `health`, `rollback`, `backup`, `renew-certs`. They print each event
  of the run and end with its outcome. Exit 0 the run succeeded (or there was nothing to do); 1 it failed,
  was cancelled or is still going at the timeout; 2 it could not be launched or asked.
- Direct (the pipeline's own resources, built from the settings): `db check`, `cache clear`, `restart`,
  `logs collect`. Exit 0 done; 1 what it acts on is not in order (down, refusing); 2 bad arguments or settings.
- `jobs promote-config`, `github approver`: facts for CI steps.

Every failure is one line on stderr naming the cause and the fix. `--json`: stdout carries only JSON (JSON
Lines while a run is followed: `launched`, each `event`, the `result`). Tokens come from the environment
only; no secret is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from shop_ops.operator.dagster_api import (
    CommandFailed,
    DagsterApi,
    OperatorError,
    RunEvent,
    parse_tags,
    promote_run_config,
    serving_release,
    verified_release,
)
from shop_ops.operator.github import deployment_approver
from shop_ops.settings import ENVIRONMENTS

if TYPE_CHECKING:
    from shop_ops.operator.launches import Launch

DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
URL_ENV = "SHOP_OPS_DAGSTER_URL"
TOKEN_ENV = "SHOP_OPS_DAGSTER_TOKEN"  # a bearer token for a proxy in front of the webserver, if there is one
LAUNCHING = ("deploy", "migrate", "health", "rollback", "backup", "renew-certs")
DIRECT = ("db", "cache", "restart", "logs")
COMMANDS = ("jobs", "github", *LAUNCHING, *DIRECT)


def _dagster_options(parser: argparse.ArgumentParser, follow: bool = True) -> None:
    parser.add_argument(
        "--dagster-url", default=os.environ.get(URL_ENV, DEFAULT_DAGSTER_URL),
        help=f"the Dagster webserver (default ${URL_ENV} or {DEFAULT_DAGSTER_URL})",
    )  # fmt: skip
    if follow:
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to follow the run (default 3600)")


def _launch_options(parser: argparse.ArgumentParser) -> None:
    _dagster_options(parser)
    parser.add_argument("--operator", help="who launches it: the run's shop-ops/launched-by tag (default $USER)")
    parser.add_argument("--json", action="store_true", help="JSON Lines on stdout: launched, each event, the result")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The operator subcommands of `shop-ops`."""
    jobs = sub.add_parser("jobs", help="launch Dagster jobs through its GraphQL API and follow them")
    actions = jobs.add_subparsers(dest="action", required=True)
    launch = actions.add_parser("launch", help="launch JOB, print its events, exit non-zero unless it succeeds")
    launch.add_argument("job")
    launch.add_argument("--config-json", metavar="FILE|-", help="run config as JSON (a file, or - for stdin)")
    launch.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="a run tag (repeatable)")
    launch.add_argument("--json", action="store_true", help="JSON Lines on stdout: launched, each event, the result")
    _dagster_options(launch)
    promote = actions.add_parser(
        "promote-config", help="print promote_production's run config for a release verified on staging"
    )
    promote.add_argument("version")
    promote.add_argument("--approved-by", required=True, help="who approved the production deploy")
    _dagster_options(promote, follow=False)
    github = sub.add_parser("github", help="GitHub Actions facts for CI steps")
    github_actions = github.add_subparsers(dest="action", required=True)
    approver = github_actions.add_parser(
        "approver", help="print who approved this workflow run's environment (GITHUB_* variables, GITHUB_TOKEN)"
    )
    approver.add_argument("--environment", default="production")

    deploy = sub.add_parser("deploy", help="release_staging / promote_production of VERSION, followed to the end")
    deploy.add_argument("environment", choices=ENVIRONMENTS)
    deploy.add_argument("version", help="the release version (MAJOR.MINOR.PATCH) as tagged in the registry")
    deploy.add_argument("--approved-by", help="production: who approved the deploy (recorded in the release ledger)")
    deploy.add_argument("--force", action="store_true", help="deploy even when that release already serves")
    migrate = sub.add_parser("migrate", help="materialize ENV/database_schema (as the UI's Materialize does)")
    migrate.add_argument("environment", choices=ENVIRONMENTS)
    health = sub.add_parser("health", help="check_environment_health: every environment's /readyz")
    rollback = sub.add_parser("rollback", help="rollback of ENV (the partition) to its previous verified release")
    rollback.add_argument("environment", choices=ENVIRONMENTS)
    rollback.add_argument("--reason", help="recorded in the release ledger (default: who asked, through what)")
    backup = sub.add_parser("backup", help="nightly_backup (both databases, restore tests) for a day")
    backup.add_argument("--day", help="the partition YYYY-MM-DD (default: the newest complete day, as the schedule)")
    backup.add_argument("--force", action="store_true", help="back up even when that day's run already succeeded")
    renew = sub.add_parser("renew-certs", help="renew_certificates: renew near expiry, reload the routers, scan")
    for parser in (deploy, migrate, health, rollback, backup, renew):
        _launch_options(parser)

    db = sub.add_parser("db", help="an environment's database")
    db_actions = db.add_subparsers(dest="action", required=True)
    check = db_actions.add_parser("check", help="connect, version, round trip, schema revision, pool stats")
    check.add_argument("environment", choices=ENVIRONMENTS)
    cache = sub.add_parser("cache", help="an environment's Redis cache")
    cache_actions = cache.add_subparsers(dest="action", required=True)
    clear = cache_actions.add_parser("clear", help="delete the catalog's cache keys (--catalog) or the whole cache")
    clear.add_argument("environment", choices=ENVIRONMENTS)
    scope = clear.add_mutually_exclusive_group(required=True)
    scope.add_argument("--catalog", dest="scope", action="store_const", const="catalog", help="catalog keys only")
    scope.add_argument("--all", dest="scope", action="store_const", const="all", help="the whole cache, never carts")
    restart = sub.add_parser("restart", help="restart the shop (slot by slot) or the router (graceful reload)")
    restart.add_argument("environment", choices=ENVIRONMENTS)
    restart.add_argument("service", choices=("shop", "router"), help="shop: backend + storefront; router: nginx")
    logs = sub.add_parser("logs", help="the central log store")
    logs_actions = logs.add_subparsers(dest="action", required=True)
    collect = logs_actions.add_parser("collect", help="ENV's lines in [--since, --until) into one .tar.gz")
    collect.add_argument("environment", choices=ENVIRONMENTS)
    collect.add_argument("--since", required=True, help="15m, 2h, 7d ago, or ISO 8601 (UTC unless it says)")
    collect.add_argument("--until", default="now", help="as --since (default now)")
    collect.add_argument("--output", help="the archive (default shop-ops-logs-ENV-SINCE-UNTIL.tar.gz here)")
    collect.add_argument("--max-lines", type=int, default=1_000_000, help="refuse a window with more lines")
    for parser in (check, clear, restart, collect):
        parser.add_argument("--json", action="store_true", help="one JSON object on stdout")


# ---------------------------------------------------------------------------------------------- output
class Output:
    """Text for people or JSON for machines on stdout; every failure also as one line on stderr."""

    def __init__(self, command: str, as_json: bool) -> None:
        self.command = command
        self.as_json = as_json

    def json(self, value: dict[str, Any]) -> None:
        print(json.dumps(value, default=str), flush=True)

    def text(self, line: str) -> None:
        if not self.as_json:
            print(line, flush=True)

    def note(self, line: str) -> None:
        """Progress: stdout for people, stderr under --json (stdout is JSON only)."""
        print(line, file=sys.stderr if self.as_json else sys.stdout, flush=True)

    def fail(self, message: str, code: int) -> int:
        line = " ".join(message.split())
        if self.as_json:
            self.json({"type": "error", "error": line, "exit_code": code})
        print(f"shop-ops {self.command}: {line}", file=sys.stderr, flush=True)
        return code


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


def _api(args: argparse.Namespace) -> DagsterApi:
    return DagsterApi(args.dagster_url, token=os.environ.get(TOKEN_ENV) or None)


def follow_launch(api: DagsterApi, launch: Launch, out: Output, timeout: float) -> int:
    """Launch, print each event as it comes, end with the outcome; the exit code (0 success, 1 otherwise)."""
    run_id = api.launch(launch.job, launch.run_config, launch.tags, launch.asset_selection)
    url = api.run_url(run_id)
    if out.as_json:
        out.json({"type": "launched", "what": launch.what, "job": launch.job, "run_id": run_id, "url": url,
                  "tags": launch.tags, "asset_selection": launch.asset_selection})  # fmt: skip
    out.text(f"launched {launch.job} run {run_id}: {url}")

    def on_event(event: RunEvent) -> None:
        if out.as_json:
            out.json({"type": "event", "timestamp": event.timestamp, "level": event.level, "step": event.step,
                      "message": event.message, "error": event.error})  # fmt: skip
        else:
            print(event.line(), flush=True)

    outcome = api.follow(launch.job, run_id, on_event=on_event, timeout=timeout)
    if out.as_json:
        out.json({"type": "result", "job": launch.job, "run_id": run_id, "url": url, "status": outcome.status,
                  "succeeded": outcome.succeeded, "timed_out": outcome.timed_out, "errors": list(outcome.errors),
                  "summary": outcome.summary()})  # fmt: skip
    if outcome.succeeded:
        out.text(outcome.summary())
        return 0
    print(f"shop-ops {out.command}: {outcome.summary()}", file=sys.stderr, flush=True)
    return 1


def _nothing_to_do(out: Output, reason: str) -> int:
    if out.as_json:
        out.json({"type": "result", "skipped": True, "succeeded": True, "summary": reason})
    out.text(f"nothing to do: {reason}")
    return 0


# ---------------------------------------------------------------------------------------------- commands
def _launching(args: argparse.Namespace, out: Output) -> int:
    from shop_ops.operator import launches  # the jobs' config types: loaded only to launch one

    operator = launches.operator_name(args.operator)
    with _api(args) as api:
        if args.command == "deploy":
            return _deploy(args, api, operator, out)
        if args.command == "migrate":
            launch = launches.migrate(args.environment, operator)
            if not api.materializations([launches.RELEASED_BACKEND], limit=1):  # the asset's input: its image
                raise OperatorError(
                    f"{args.environment}/database_schema migrates with the backend image build_images released, and "
                    f"Dagster at {api.url} has no {launches.RELEASED_BACKEND} yet: launch build_images first (a "
                    "release's own migration runs inside `shop-ops deploy`)"
                )
        elif args.command == "health":
            launch = launches.health(operator)
        elif args.command == "rollback":
            launch = launches.rollback(args.environment, operator, args.reason)
        elif args.command == "backup":
            from shop_ops.backup.partitions import newest_complete_day

            day = _day(args.day) if args.day else newest_complete_day(datetime.now(UTC))
            done = [] if args.force else api.runs("nightly_backup", {"dagster/partition": day.isoformat()}, ["SUCCESS"])
            if done:
                url = api.run_url(done[0]["runId"])
                return _nothing_to_do(out, f"nightly_backup of {day} already succeeded ({url}); --force backs up again")
            launch = launches.backup(day, operator)
        else:
            launch = launches.renew_certificates(operator)
        return follow_launch(api, launch, out, args.timeout)


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise OperatorError(f"--day {text!r} is not a date YYYY-MM-DD") from None


def _deploy(args: argparse.Namespace, api: DagsterApi, operator: str, out: Output) -> int:
    from shop_ops.operator import launches

    environment, version = args.environment, launches.check_version(args.version)
    if environment == "production":
        if not (args.approved_by or "").strip():
            raise OperatorError(f"deploy of {version} to production needs --approved-by NAME (who approved it)")
        release = verified_release(api, version)  # the digests verified on staging, or an error saying so
    else:
        release = _registry_release(version)
    serving = None if args.force else serving_release(api, environment)
    if serving and all(serving[key] == release[key] for key in ("version", "backend_digest", "frontend_digest")):
        url = api.run_url(serving["run_id"])
        return _nothing_to_do(
            out, f"{environment} already serves {version}, these digests ({url}); --force deploys again"
        )
    return follow_launch(api, launches.deploy(environment, release, operator, args.approved_by), out, args.timeout)


def _registry_release(version: str) -> dict[str, str]:
    """The release tag's digests in the registry the push sensor watches (built from the settings like it)."""
    import httpx

    from shop_ops.resources.registry import RegistryError
    from shop_ops.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise OperatorError(str(exc)) from None
    from shop_ops.definitions import registry_resource

    registry = registry_resource(settings)
    from shop_ops.operator.launches import registry_release

    try:
        return registry_release(
            registry.images_api(), registry.backend_repository, registry.frontend_repository, version
        )
    except (RegistryError, httpx.HTTPError) as exc:
        raise OperatorError(f"the registry {registry.url} did not answer for {version}: {exc}") from None


def _direct(args: argparse.Namespace, out: Output) -> int:
    from shop_ops.operator import direct

    if args.command == "db":
        report = direct.db_check(args.environment)
        if out.as_json:
            out.json(report.as_json())
        for line in report.lines():
            out.text(line)
        return 0
    if args.command == "cache":
        cleared = direct.cache_clear(args.environment, args.scope)
        if out.as_json:
            out.json(cleared.as_json())
        out.text(cleared.line())
        return 0
    if args.command == "restart":
        done = direct.restart_service(args.environment, args.service, out.note)
        if out.as_json:
            out.json(done)
        if args.service == "router":
            out.text(f"{args.environment} router {done['url']} reloaded gracefully ({done['total_seconds']} s)")
        else:
            out.text(
                f"{args.environment} shop restarted: {done['slot']} slot serves (was {done['previous_slot']}), "
                f"{done['total_seconds']} s; no request went to a slot that was not ready"
            )
        return 0
    if args.max_lines < 1:
        raise OperatorError("--max-lines must be at least 1")
    found = direct.logs_collect(
        args.environment, args.since, args.until, args.output, args.max_lines, datetime.now(UTC)
    )
    if out.as_json:
        out.json(found)
    counts = ", ".join(f"{service} {n}" for service, n in found["lines_per_service"].items()) or "none"
    out.text(f"{found['lines']} lines of {args.environment} ({counts}) -> {found['archive']} ({found['bytes']} bytes)")
    return 0


def _jobs(args: argparse.Namespace, out: Output, stdin: TextIO) -> int:
    with _api(args) as api:
        if args.action == "promote-config":
            config = promote_run_config(verified_release(api, args.version), args.approved_by)
            print(json.dumps(config, indent=2))
            return 0
        from shop_ops.operator.launches import Launch

        config, tags = _read_config(args.config_json, stdin), parse_tags(args.tag)
        return follow_launch(api, Launch(f"launch {args.job}", args.job, config, tags), out, args.timeout)


def _github(args: argparse.Namespace) -> int:
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


def run(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """Carry out one operator command; returns the exit code."""
    out = Output(args.command, getattr(args, "json", False))
    handlers: dict[str, Callable[[], int]] = {
        "jobs": lambda: _jobs(args, out, stdin or sys.stdin),
        "github": lambda: _github(args),
    }
    try:
        if args.command in handlers:
            return handlers[args.command]()
        if args.command in LAUNCHING:
            return _launching(args, out)
        return _direct(args, out)
    except CommandFailed as exc:
        return out.fail(str(exc), 1)
    except OperatorError as exc:
        return out.fail(str(exc), 2)
