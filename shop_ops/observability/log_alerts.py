"""Log alerts: error spikes and new kinds of errors, read from the central log store (PostgreSQL locally, CloudWatch Logs on aws).

`ErrorLogResource` (`error_log`) answers two questions over a time window, whatever the store:
error lines per UTC minute, and error lines per kind (error code, exception type, or a router's
http_<status>). Locally they are SQL over `logs.records` (shop_ops/observability/logs.py, written
by rsyslog); on aws they come from the ECS services' log groups (awslogs driver, one JSON line per
event) read with FilterLogEvents, the kind taken by `error_kind` the same way the table's
generated column takes it. `check` applies the decisions of logs.py (`error_spike`,
`new_error_kinds`) and says what to alert on; the sensor (sensors/log_alerts.py) sends it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from shop_ops.observability import logs
from shop_ops.resources.aws import AwsResource

_EXCEPTION = re.compile(r"(?:^|\n)([A-Za-z_][A-Za-z0-9_.]*)(?::[^\n]*)?\s*$")
_LEVELS = {"warn": "warning", "err": "error", "exception": "error", "crit": "critical"}


def error_kind(fields: Mapping[str, Any]) -> str | None:
    """The kind of one error line's JSON fields: `code`, else `error_code`, else the exception type ending `exc`,
    else `http_<status>`; None for a line that is not an error (level error, critical, fatal or panic)."""
    level = str(fields.get("level") or "").lower()
    if _LEVELS.get(level, level) not in logs.ERROR_LEVELS:
        return None
    for key in ("code", "error_code"):
        if fields.get(key):
            return str(fields[key])
    found = _EXCEPTION.search(str(fields.get("exc") or ""))
    if found:
        return found.group(1)
    return f"http_{fields['status']}" if "status" in fields else None


@dataclass(frozen=True)
class ErrorLine:
    """One error line: when, and its kind (None: an error without code, exception or status)."""

    ts: datetime
    kind: str | None


def cloudwatch_error_lines(client: Any, log_groups: list[str], since: datetime, until: datetime) -> Iterator[ErrorLine]:
    """The error lines of `log_groups` between `since` and `until` (FilterLogEvents, every page; JSON lines only)."""
    for group in log_groups:
        kwargs: dict[str, Any] = {
            "logGroupName": group,
            "startTime": int(since.timestamp() * 1000),
            "endTime": int(until.timestamp() * 1000) - 1,
        }
        while True:
            page = client.filter_log_events(**kwargs)
            for event in page.get("events", []):
                try:
                    fields = json.loads(event["message"])
                except (ValueError, KeyError):
                    continue
                if not isinstance(fields, dict):
                    continue
                level = str(fields.get("level") or "").lower()
                if _LEVELS.get(level, level) in logs.ERROR_LEVELS:
                    yield ErrorLine(datetime.fromtimestamp(event["timestamp"] / 1000, UTC), error_kind(fields))
            token = page.get("nextToken")
            if not token or token == kwargs.get("nextToken"):
                break
            kwargs["nextToken"] = token


class ErrorLogResource(dg.ConfigurableResource):
    """Where the log alerts read error lines: `postgres` (the local log store's DSN) or `cloudwatch` (log groups)."""

    store: Literal["postgres", "cloudwatch"]
    dsn: str = ""
    log_groups: list[str] = Field(default_factory=list)
    region: str = ""
    endpoint_url: str | None = None
    # postgres: lines older than this many days are deleted (apply_retention); CloudWatch keeps its own
    # retention (the log groups' retention_in_days in infra/terraform).
    retention_days: int = 14

    def apply_retention(self) -> int:
        """Delete the log store's lines older than `retention_days`; how many went (0 on CloudWatch)."""
        return logs.delete_older_than(self.dsn, self.retention_days) if self.store == "postgres" else 0

    def _lines(self, since: datetime, until: datetime) -> list[ErrorLine]:
        client = AwsResource(region=self.region, endpoint_url=self.endpoint_url).client("logs")
        return list(cloudwatch_error_lines(client, list(self.log_groups), since, until))

    def error_counts_per_minute(self, since: datetime, until: datetime) -> dict[datetime, int]:
        """Error lines per UTC minute from `since`'s minute up to `until` (excluded), zeros included."""
        if self.store == "postgres":
            return logs.error_counts_per_minute(self.dsn, since, until)
        start = since.astimezone(UTC).replace(second=0, microsecond=0)
        found = Counter(line.ts.replace(second=0, microsecond=0) for line in self._lines(start, until))
        return logs.per_minute(found, since, until)

    def error_kinds(self, since: datetime, until: datetime) -> dict[str, int]:
        """Error lines per kind between `since` and `until`."""
        if self.store == "postgres":
            return logs.error_kinds(self.dsn, since, until)
        kinds: dict[str, int] = {}
        for line in self._lines(since, until):
            if line.kind is not None:
                kinds[line.kind] = kinds.get(line.kind, 0) + 1
        return kinds


@dataclass(frozen=True)
class LogFindings:
    """What one check found: a spike (or None) and the error kinds new since the 7 days before the window."""

    spike: logs.ErrorSpike | None
    new_kinds: dict[str, int]
    checked_until: datetime

    def message(self, ui_url: str) -> tuple[str, str] | None:
        """(subject, text) of the alert, None when there is nothing to say."""
        parts = []
        if self.spike is not None:
            s = self.spike
            parts.append(
                f"error spike: {s.count} error lines in the minute from {s.minute:%H:%M} UTC "
                f"(the hour before: {s.baseline:.1f} a minute)"
            )
        if self.new_kinds:
            kinds = ", ".join(f"{kind} ({count}x)" for kind, count in sorted(self.new_kinds.items()))
            parts.append(f"new kinds of errors, not seen in the 7 days before: {kinds}")
        if not parts:
            return None
        subject = "shop logs: " + ("error spike" if self.spike else "new kind of error")
        text = "\n".join(parts) + f"\nRunbook: docs/runbooks/incidents.md#log-alerts\nDagster: {ui_url}"
        return subject, text


def check(error_log: ErrorLogResource, now: datetime, since: datetime, threshold: int) -> LogFindings:
    """A spike in the last whole minute before `now`, and the kinds seen in [since, last whole minute) that
    the 7 days before `since` did not have."""
    start, end = logs.spike_window(now)
    spike = logs.error_spike(error_log.error_counts_per_minute(start, end), now, threshold)
    until = max(end, since)
    current = error_log.error_kinds(since, until) if since < until else {}
    before = error_log.error_kinds(*logs.new_kind_window(since)) if current else {}
    new = {kind: current[kind] for kind in logs.new_error_kinds(current, before)}
    return LogFindings(spike, new, until)
