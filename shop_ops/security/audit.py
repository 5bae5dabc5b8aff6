"""The audit trail: who launched which job with what configuration, the release ledger's approvals and the secrets
read, by name, in each run; a DataFrame with retention.

Three stores, each shared by every run, joined on the run id:
- Dagster's run storage: each run's job, status, tags and run config. Who launched it is the run tag
  `shop-ops/launched-by`, which `shop-ops jobs launch --tag` sets (scripts/dagster-job.sh: the CI actor
  or the user). Open-source Dagster has no login, so a run launched from the UI or its API without that
  tag names nobody (`launched_by` empty); sensors, schedules and backfills are named by their tags.
- the release ledger's `releases`: each deploy or rollback with its `approved_by` (shop_ops/resources/ledger.py),
  recorded with the run that started it;
- the ledger's `secret_access`: every read and write through the `secrets` resource, by name, with its run
  (shop_ops/security/secrets.py). Never a value: run config and tags are redacted before they go in the frame.

One row per run (`source` = `run`); a ledger row or a secret access that no run in the window explains gets a
row of its own (`release ledger`, `secret access`), so nothing recorded is left out. Rows older than the
retention window are left out, and older `secret_access` records are deleted. Plain functions, and the
`AuditTrail` resource that reads the stores for the `audit_log` asset.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from shop_ops.resources.ledger import LedgerResource
from shop_ops.services.redaction import redact

LAUNCHED_BY_TAG = "shop-ops/launched-by"
USER_TAG = "user"  # what Dagster+ records for a launch from its UI (open-source Dagster records no user)
PRODUCTION = "production"
COLUMNS = (
    "at", "source", "run_id", "job", "status", "launched_by", "trigger", "environment", "config", "tags",
    "release_id", "version", "release_status", "approved_by", "secrets_read", "secrets_written",
)  # fmt: skip


@dataclass(frozen=True)
class RunFacts:
    """What Dagster's run storage holds about one run (its config and tags as stored, not yet redacted)."""

    run_id: str
    job: str
    status: str
    created_at: float  # epoch seconds
    tags: Mapping[str, str]
    config: Mapping[str, Any]


def run_facts(records: Iterable[dg.RunRecord]) -> list[RunFacts]:
    """RunFacts of Dagster run records (`instance.get_run_records`)."""
    facts = []
    for record in records:
        run, created = record.dagster_run, record.create_timestamp
        if created.tzinfo is None:  # SQLite run storage keeps naive UTC
            created = created.replace(tzinfo=UTC)
        config = dict(run.run_config or {})
        facts.append(RunFacts(run.run_id, run.job_name, run.status.value, created.timestamp(), dict(run.tags), config))
    return facts


def launched(tags: Mapping[str, str]) -> tuple[str | None, str]:
    """(who launched the run, how): the `shop-ops/launched-by` tag (or Dagster+'s `user`), and `sensor <name>`,
    `schedule <name>`, `backfill <id>`, `ui` (Dagster's `dagster/from_ui`) or `api` (GraphQL, the command line)."""
    who = tags.get(LAUNCHED_BY_TAG) or tags.get(USER_TAG) or None
    for tag, kind in (("dagster/sensor_name", "sensor"), ("dagster/schedule_name", "schedule"),
                      ("dagster/backfill", "backfill")):  # fmt: skip
        if tags.get(tag):
            return who, f"{kind} {tags[tag]}"
    return who, "ui" if tags.get("dagster/from_ui") == "true" else "api"


def redacted_json(value: Mapping[str, Any]) -> str:
    """`value` as JSON text with every known secret and credential-shaped value masked (`"password": "***"`)."""
    return redact(json.dumps(value, sort_keys=True, default=str))


def _joined(values: Iterable[Any]) -> str | None:
    """Distinct non-empty values in order, comma-separated (a run normally has one release); None if none."""
    seen = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    return ", ".join(seen) if seen else None


def _names(accesses: Sequence[Mapping[str, Any]], action: str) -> list[str]:
    return sorted({a["name"] for a in accesses if a["action"] == action})


def _timestamp(epoch: float) -> pd.Timestamp:
    return pd.Timestamp(epoch, unit="s", tz="UTC")


def audit_frame(
    runs: Sequence[RunFacts],
    releases: Sequence[Mapping[str, Any]],
    accesses: Sequence[Mapping[str, Any]],
    since: float = 0.0,
) -> pd.DataFrame:
    """The audit trail at or after `since` (epoch s), newest first: one row per run with its launcher, redacted
    config and tags, its release attempts (id, version, status, approver) and the names of the secrets it
    read and wrote; ledger rows and secret accesses of no run in the window as rows of their own.

    `releases`: the ledger's `history()` rows; `accesses`: its `secret_accesses()` rows.
    """
    releases = [r for r in releases if r["started_at"] >= since]
    accesses = [a for a in accesses if a["at"] >= since]
    run_ids = {run.run_id for run in runs if run.created_at >= since}
    releases_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    accesses_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    rows: list[dict[str, Any]] = []
    for release in releases:
        if release.get("run_id") in run_ids:
            releases_of[release["run_id"]].append(release)
        else:
            rows.append(_release_row(release))
    for access in accesses:
        if access.get("run_id") in run_ids:
            accesses_of[access["run_id"]].append(access)
        else:
            rows.append(_access_row(access))
    for run in runs:
        if run.run_id not in run_ids:
            continue
        who, trigger = launched(run.tags)
        attempts, used = releases_of[run.run_id], accesses_of[run.run_id]
        rows.append({
            "at": _timestamp(run.created_at), "source": "run", "run_id": run.run_id, "job": run.job,
            "status": run.status, "launched_by": who, "trigger": trigger, "environment": run.tags.get("environment"),
            "config": redacted_json(run.config), "tags": redacted_json(run.tags),
            "release_id": _joined(r["release_id"] for r in attempts), "version": _joined(r["version"] for r in attempts),
            "release_status": _joined(r["status"] for r in attempts),
            "approved_by": _joined(r["approved_by"] for r in attempts),
            "secrets_read": _names(used, "read"), "secrets_written": _names(used, "write"),
        })  # fmt: skip
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.sort_values("at", ascending=False, kind="stable").reset_index(drop=True)


def _release_row(release: Mapping[str, Any]) -> dict[str, Any]:
    """A ledger row that no run in the window started (recorded before runs were, or outside Dagster)."""
    return {
        "at": _timestamp(release["started_at"]), "source": "release ledger", "run_id": release.get("run_id"),
        "job": None, "status": None, "launched_by": None, "trigger": None, "environment": release["environment"],
        "config": None, "tags": None, "release_id": release["release_id"], "version": release["version"],
        "release_status": release["status"], "approved_by": release["approved_by"] or None, "secrets_read": [],
        "secrets_written": [],
    }  # fmt: skip


def _access_row(access: Mapping[str, Any]) -> dict[str, Any]:
    """A secret access outside any run in the window (a sensor, the command line, a run since deleted)."""
    names = [access["name"]]
    return {
        "at": _timestamp(access["at"]), "source": "secret access", "run_id": access.get("run_id"), "job": None,
        "status": None, "launched_by": None, "trigger": None, "environment": None, "config": None, "tags": None,
        "release_id": None, "version": None, "release_status": None, "approved_by": None,
        "secrets_read": names if access["action"] == "read" else [],
        "secrets_written": names if access["action"] == "write" else [],
    }  # fmt: skip


def unapproved_production_deploys(releases: Sequence[Mapping[str, Any]], since: float = 0.0) -> list[str]:
    """The release ids of production deploy attempts at or after `since` with no recorded approver (the flow's
    guard refuses those, so any here got past it); rollbacks need no approval."""
    return [
        r["release_id"]
        for r in releases
        if r["environment"] == PRODUCTION and r["kind"] == "deploy" and r["started_at"] >= since
        and not (r["approved_by"] or "").strip()
    ]  # fmt: skip


@dataclass
class AuditLog:
    """One reading of the audit trail: the frame, the production deploys without an approver, what was pruned."""

    frame: pd.DataFrame
    unapproved: list[str]
    retention_days: int
    since: float
    pruned_secret_accesses: int

    def metadata(self) -> dict[str, Any]:
        """Counts as numbers; the newest rows as markdown (no config or tags: those stay in the frame)."""
        runs = self.frame[self.frame["source"] == "run"]
        preview = self.frame.head(20).drop(columns=["config", "tags"])
        return {
            "rows": len(self.frame),
            "runs": len(runs),
            "runs_without_launcher": int(runs["launched_by"].isna().sum()),
            "approved_releases": int(self.frame["approved_by"].notna().sum()),
            "secret_reads": int(self.frame["secrets_read"].map(len).sum()),
            "retention_days": self.retention_days,
            "since": datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds"),
            "pruned_secret_accesses": self.pruned_secret_accesses,
            "unapproved_production_deploys": ", ".join(self.unapproved) or "none",
            "latest": dg.MetadataValue.md(preview.to_markdown(index=False) if not preview.empty else "nothing yet"),
        }


class AuditTrail(dg.ConfigurableResource):
    """The audit trail's stores: Dagster's run storage (the instance given), the release ledger; `retention_days`."""

    ledger: LedgerResource
    retention_days: int = Field(default=90, ge=1, description="rows older than this are left out (and pruned)")

    def collect(self, instance: dg.DagsterInstance, now: float | None = None) -> AuditLog:
        """Read the window's runs, release attempts and secret accesses; delete older secret accesses."""
        since = (time.time() if now is None else now) - self.retention_days * 86400
        ledger = self.ledger.open()
        pruned = ledger.prune_secret_accesses(since)
        records = instance.get_run_records(dg.RunsFilter(created_after=datetime.fromtimestamp(since, UTC)))
        releases = ledger.history()
        frame = audit_frame(run_facts(records), releases, ledger.secret_accesses(since), since)
        return AuditLog(frame, unapproved_production_deploys(releases, since), self.retention_days, since, pruned)
