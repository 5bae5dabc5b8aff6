"""`shop-ops logs collect ENV --since --until`: an environment's lines from the central log store, in one archive.

Read as the log alerts read the store (the `error_log` resource's DSN: the reader role, its password in
a pgpass file) with `observability.logs.records`: the environment's lines whose own time is in
[since, until). The archive is a gzipped tar: `<service>.jsonl` per service (one stored line per line,
oldest first, as `logs.records` holds it: time, service, slot, release, level, request id, message,
fields) and `manifest.json` (environment, window, lines per service). Credentials were already masked
on the way into the store (`logs.clean`). The same window gives the same bytes (fixed times in the tar
and gzip headers), so collecting again is harmless; the file is written whole or not at all (mode 0600).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tarfile
import tempfile
from collections import defaultdict
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shop_ops.observability import logs
from shop_ops.operator.dagster_api import CommandFailed, OperatorError

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DEFAULT_MAX_LINES = 1_000_000


def parse_moment(text: str, now: datetime) -> datetime:
    """`now`, a duration ago (`90s`, `15m`, `2h`, `7d`) or an ISO 8601 date or time (UTC unless it says)."""
    value = text.strip()
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(**{_UNITS[unit]: float(amount)})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise OperatorError(
            f"{text!r} is not a time: use now, a duration ago (15m, 2h, 7d) or ISO 8601 (2026-12-01T10:00)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def default_output(environment: str, since: datetime, until: datetime) -> Path:
    return Path(f"shop-ops-logs-{environment}-{_stamp(since)}-{_stamp(until)}.tar.gz")


def _row(record: logs.LogRecord) -> dict[str, Any]:
    row = asdict(record)
    for key in ("received_at", "ts"):
        row[key] = row[key].astimezone(UTC).isoformat() if row[key] else None
    return row


def collect(
    dsn: str, environment: str, since: datetime, until: datetime, output: Path, max_lines: int = DEFAULT_MAX_LINES
) -> dict[str, Any]:
    """Write the archive of `environment`'s lines in [since, until) to `output`; what went in."""
    if until <= since:
        raise OperatorError(f"--until {until.isoformat()} is not after --since {since.isoformat()}: swap or widen them")
    try:
        found = logs.records(dsn, environment=environment, since=since, until=until, limit=max_lines + 1)
    except logs.LogsError as exc:
        raise CommandFailed(
            f"the central log store does not answer ({' '.join(str(exc).split())}): start it with `shop-ops local up`"
        ) from None
    if len(found) > max_lines:
        raise CommandFailed(
            f"more than {max_lines} lines of {environment} between {since.isoformat()} and {until.isoformat()}: "
            "narrow --since/--until (or raise --max-lines)"
        )
    per_service: dict[str, list[str]] = defaultdict(list)
    for record in found:
        per_service[record.service].append(json.dumps(_row(record), sort_keys=True, default=str))
    counts = {service: len(lines) for service, lines in sorted(per_service.items())}
    manifest = {
        "environment": environment, "since": since.isoformat(), "until": until.isoformat(), "lines": len(found),
        "lines_per_service": counts, "store": "central log store (logs.records)",
    }  # fmt: skip
    members = {"manifest.json": json.dumps(manifest, indent=2, sort_keys=True) + "\n"}
    members.update({f"{service}.jsonl": "\n".join(per_service[service]) + "\n" for service in counts})
    _write_archive(output, members, int(until.timestamp()))
    return {**manifest, "archive": str(output), "bytes": output.stat().st_size}


def _write_archive(output: Path, members: dict[str, str], mtime: int) -> None:
    """A gzipped tar of `members` (name -> text), the same bytes for the same input, replacing `output` at once."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), mtime, 0o600
            tar.addfile(info, io.BytesIO(data))
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".shop-ops-logs-", dir=output.parent)
    try:
        with os.fdopen(handle, "wb") as fh:
            fh.write(buffer.getvalue())
        os.chmod(temporary, 0o600)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
