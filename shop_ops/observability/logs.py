"""Central logs: the rsyslog configuration that collects every service's log files into a PostgreSQL table, that table, its queries, and the decisions of the log alerts.

The collector is Debian's rsyslog (shop_ops/services/rsyslog.py runs it): one `imfile` input per
`LogSource` (a file or a glob), each tagged with its service, environment and, when known, slot
and release. Lines are parsed by rsyslog itself, by format:

- `json`: one JSON object per line (the shop's backend, the routers' `shop_json` access log):
  `mmjsonparse` (no cookie); every key is kept in `fields`, `ts`/`level`/`msg`/`request_id`
  fill their columns. A router line (it has `status` and no `level`) is an error from 500 up, a
  warning from 400.
- `podman`: a container's k8s-file log, `<RFC 3339 time> stdout|stderr F|P <line>` per line: the
  prefix is cut off with `re_extract` and the rest parsed with rsyslog's `parse_json()` (mmjsonparse
  only parses the whole message, prefix included); a line that is not JSON is kept as text. With
  `labels_from_filename` the slot and release come from the file's name, `<service>_<slot>_<release>.log`
  (`container_log_path` of shop_ops/resources/containers.py, where `DockerEngine.start_service` takes `log_path`).
- `postgresql`, `redis`, `dagster`: plain lines; time and level are read from each program's own
  line prefix; PostgreSQL and dagster continuation lines join their first line. A PostgreSQL
  slow-query line (`log_min_duration_statement`: `LOG:  duration: 512.345 ms  statement: ...`) is a
  `warning` with fields `{"kind": "slow_query", "duration_ms": 512.345}` (`slow_queries()` finds them).
- `plain`: the line as it is (a bracketed `[LEVEL]` gives the level).

Output: `ompgsql` inserts one row per line into `logs.records` (`ensure_schema`). rsyslog connects
as a role that may only INSERT there; its password never enters the rendered configuration: libpq
reads it from a pgpass file of rsyslog's own folder (mode 0600) named by `passfile=` in the
connection string. PostgreSQL reads no file of ours. Values reach SQL as standard-conforming
string literals (`option.stdsql`); bytes that are not UTF-8 become "?" (`mmutf8fix`, else PostgreSQL
would refuse the statement and the line would be lost), and everything else that could fail (a bad
timestamp, JSON that PostgreSQL refuses) goes through functions that cannot fail, so one odd line
never blocks the queue. Before storage, `logs.clean()` removes terminal colour codes and masks credentials
(`Bearer ...`, `password=...`, `"token": "..."`) in the message and the fields: a safety net; the
shop and the routers log no headers, bodies or query strings in the first place.

While PostgreSQL is away, the output queue fills memory and then rsyslog's work directory (bounded
by `queue.maxDiskSpace`); rsyslog retries forever and saves the queue on shutdown. Retention:
`delete_older_than(days)`; the plain files (rsyslog's own messages, and source files no program
rotates itself) are rotated by the logrotate configuration of `render_logrotate` (copytruncate;
the inputs reopen a truncated file).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlencode

import psycopg2

from shop_ops.resources.containers import CONTAINER_LOG_REGEX
from shop_ops.services.files import write_pgpass, write_private
from shop_ops.services.processes import scram_verifier
from shop_ops.services.rsyslog import RsyslogServer

LogFormat = Literal["json", "podman", "postgresql", "redis", "dagster", "plain"]
FORMATS: tuple[str, ...] = ("json", "podman", "postgresql", "redis", "dagster", "plain")
SCHEMA = "logs"
TABLE = f"{SCHEMA}.records"
ERROR_LEVELS = ("error", "critical", "fatal", "panic")
SPIKE_FACTOR = 5.0  # an error spike: the last minute above this many times the previous hour's rate
NEW_KIND_LOOKBACK = timedelta(days=7)
QUEUE_MAX_DISK = "256m"  # what rsyslog may spool in its work directory while PostgreSQL is away
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_ROLE = re.compile(r"^[a-z_][a-z0-9_]*$")


class LogsError(RuntimeError):
    """The log store or the collector's configuration is not usable; the message says why and what to do."""


@dataclass(frozen=True)
class LogSource:
    """One log file (or a glob of them, wildcards in the file name) and what its lines are."""

    path: str | Path
    service: str  # backend, frontend, router, postgresql, redis, dagster, ...
    environment: str  # staging, production, or "local" for what serves both
    format: LogFormat
    slot: str | None = None
    release: str | None = None
    # slot and release from the file name <service>_<slot>_<release>.log (resources.containers.container_log_path)
    labels_from_filename: bool = False

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise LogsError(f"log source {self.path}: unknown format {self.format!r}; use one of {', '.join(FORMATS)}")
        if not os.path.isabs(str(self.path)):
            raise LogsError(f"log source {self.path}: rsyslog's imfile needs an absolute path")
        for label in ("service", "environment", "slot", "release"):
            value = getattr(self, label)
            if value is not None and not _NAME.match(value):
                raise LogsError(
                    f"log source {self.path}: {label} {value!r} may hold only letters, digits, '_', '.', '-'"
                )


@dataclass(frozen=True)
class LogStore:
    """Where rsyslog writes: a PostgreSQL database on `host`:`port`, as `user` (INSERT only)."""

    database: str
    port: int
    user: str = "shop_logs"
    host: str = "127.0.0.1"
    # The role's password, one line; None: the server trusts the role (loopback test clusters).
    password_file: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _ROLE.match(self.user):
            raise LogsError(f"log store role {self.user!r}: use lower-case letters, digits and '_'")


def container_log_source(folder: Path, environment: str, service: str) -> LogSource:
    """The input over every container log of `service` in `environment` (all slots and releases)."""
    return LogSource(
        folder / environment / f"{service}_*.log", service, environment, "podman", labels_from_filename=True
    )


# ---------------------------------------------------------------------------------------- rsyslog
def _string(value: str | Path) -> str:
    """A parameter's string in an rsyslog object: rsyslog 8.2302 takes no escape there, so a double quote
    or a backslash cannot be written and is refused ("$" and "%" are taken as they are)."""
    text = str(value)
    if '"' in text or "\\" in text or "\n" in text:
        raise LogsError(
            f"{text}: rsyslog cannot name a path with a double quote, a backslash or a line break; rename the folder"
        )
    return f'"{text}"'


def conninfo(store: LogStore, passfile: Path | None) -> str:
    """libpq's connection URI for rsyslog (ompgsql's conninfo may hold no whitespace): never the password, at most the pgpass file."""
    query = {"application_name": "rsyslog", "connect_timeout": "5"}
    if passfile is not None:
        query["passfile"] = str(passfile)
    return (
        f"postgresql://{quote(store.user, safe='')}@{quote(store.host, safe='')}:{store.port}/"
        f"{quote(store.database, safe='')}?{urlencode(query, quote_via=quote)}"
    )


# One row per line. Every value is a standard-conforming string literal (option.stdsql doubles
# quotes); the functions of ensure_schema turn bad timestamps and JSON into NULL / a wrapper.
_INSERT = (
    f"INSERT INTO {TABLE} (received_at, ts, service, environment, slot, release, level, request_id,"
    " message, fields, source_file) VALUES ("
    "'%timegenerated:::date-rfc3339%'::timestamptz,"
    " COALESCE(logs.try_ts('%$.ts%'), '%timegenerated:::date-rfc3339%'::timestamptz),"
    " '%$.service%', '%$.environment%', NULLIF('%$.slot%', ''), NULLIF('%$.release%', ''),"
    " logs.norm_level('%$.level%'), NULLIF(left('%$.request_id%', 128), ''),"
    " logs.clean('%$.message%'), logs.try_jsonb(logs.clean('%$.fields%')), '%$.file%')"
)

# RainerScript that reads a line's time, level, request id and message; the regexes are POSIX EREs
# (`[[]` is a literal "[", so no backslashes are needed in the config's strings).
_PARSE = r"""
ruleset(name="shop_parse") {
  # PostgreSQL refuses a statement with bytes that are not UTF-8: they become "?" first.
  action(type="mmutf8fix" replacementChar="?")
  set $.file = $!metadata!filename;
  unset $!metadata;
  set $.line = $msg;
  set $.ts = "";
  set $.level = "";
  set $.request_id = "";
  set $.message = "";
  set $.json = "";
  if $.labels_from_filename == "1" then {
    set $.slot = re_extract($.file, "CONTAINER_LOG_REGEX", 0, 2, "");
    set $.release = re_extract($.file, "CONTAINER_LOG_REGEX", 0, 3, "");
  }
  if $.format == "podman" then {
    set $.ts = re_extract($msg, "^([^ ]+) (stdout|stderr) [FP] ", 0, 1, "");
    set $.line = re_extract($msg, "^[^ ]+ (stdout|stderr) [FP] (.*)\$", 0, 2, $msg);
    if re_match($.line, "^[ ]*[{]") then {
      if parse_json($.line, "\$!") == 0 then { set $.json = "1"; }
    }
  }
  if $.format == "json" then {
    action(type="mmjsonparse" cookie="")
    if $parsesuccess == "OK" then { set $.json = "1"; }
  }
  if $.json == "1" then {
    if $!ts != "" then { set $.ts = $!ts; }
    set $.level = $!level;
    set $.request_id = $!request_id;
    set $.message = $!msg;
    if $.message == "" then { set $.message = $!message; }
    if $!status != "" and $.level == "" then {
      set $.message = $!method & " " & $!uri & " " & $!status;
      if cnum($!status) >= 500 then { set $.level = "error"; }
      else if cnum($!status) >= 400 then { set $.level = "warning"; }
      else { set $.level = "info"; }
    }
    if $.slot == "" and $!slot != "" then { set $.slot = $!slot; }
    if $.message == "" then { set $.message = $.line; }
    set $.fields = $!;
  } else {
    unset $!;
    set $.fields = "{}";
    set $.message = $.line;
    if $.format == "postgresql" then {
      set $.ts = re_extract($.line, "^([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ [A-Za-z0-9+:-]+) [[][0-9]+[]] ", 0, 1, "");
      # PostgreSQL writes `LOG:  ...`, PgBouncer (the same line prefix) `LOG C-0x...: ...`.
      set $.level = re_extract($.line, "^[0-9-]+ [0-9:.]+ [^ ]+ [[][0-9]+[]] ([A-Z0-9]+):? ", 0, 1, "");
      # log_min_duration_statement's line: a slow query, a warning with its kind and duration in fields.
      set $.duration = re_extract($.line, "^[0-9-]+ [0-9:.]+ [^ ]+ [[][0-9]+[]] LOG:  duration: ([0-9]+[.]?[0-9]*) ms  ", 0, 1, "");
      if $.duration != "" then {
        set $.level = "warning";
        set $.fields = '{"kind": "slow_query", "duration_ms": ' & $.duration & '}';
      }
    } else if $.format == "redis" then {
      set $.ts = re_extract($.line, "^[0-9]+:[A-Z] ([0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9:.]+) [.*#-] ", 0, 1, "");
      set $.level = re_extract($.line, "^[0-9]+:[A-Z] [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9:.]+ ([.*#-]) ", 0, 1, "");
    } else if $.format == "dagster" then {
      set $.ts = re_extract($.line, "^[^ ]*([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]+ [+-][0-9]{4})", 0, 1, "");
      set $.level = re_extract($.line, "^[^ ]+ [^ ]+ [^ ]+ - [^ ]+ - [^A-Z ]*([A-Z]+)[^ ]* - ", 0, 1, "");
    } else {
      set $.level = re_extract($.line, "[[](DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)[]]", 0, 1, "");
    }
  }
  call shop_store
}
""".replace("CONTAINER_LOG_REGEX", CONTAINER_LOG_REGEX.replace("$", "\\$"))


def render_config(
    sources: Sequence[LogSource], store: LogStore, server: RsyslogServer, passfile: Path | None = None
) -> str:
    """rsyslog's configuration: an imfile input and a ruleset per source, the parsing, the PostgreSQL output.

    `server` names the work directory and the file of rsyslog's own messages; `passfile`, a pgpass
    file holding the store role's password (see `write_config`). No system socket is opened.
    """
    if not sources:
        raise LogsError("no log sources: give the collector at least one file to read")
    lines = [
        "# The central log collector, written by shop-ops (shop_ops/observability/logs.py); edits are overwritten.",
        "# Runs as: rsyslogd -n -f <this file> -i <pid file>. No imuxsock/imklog: it reads files only.",
        f'global(workDirectory={_string(server.work_dir)} maxMessageSize="64k" processInternalMessages="on")',
        'module(load="imfile" mode="inotify" timeoutGranularity="1")',
        'module(load="mmjsonparse")',
        'module(load="mmutf8fix")',
        'module(load="ompgsql")',
        "",
        "# rsyslog's own messages (start, input and output errors): nothing else reaches the default ruleset.",
        f'action(type="omfile" file={_string(server.internal_log)} template="RSYSLOG_FileFormat")',
        "",
        f'template(name="shop_row" type="string" option.stdsql="on" string={_string(_INSERT)})',
        "",
        'ruleset(name="shop_store") {',
        f'  action(type="ompgsql" name="log_store" conninfo={_string(conninfo(store, passfile))} template="shop_row"',
        f'         queue.type="LinkedList" queue.filename="log_store" queue.maxDiskSpace="{QUEUE_MAX_DISK}"',
        '         queue.saveOnShutdown="on" queue.size="100000" queue.dequeueBatchSize="500"',
        '         action.resumeRetryCount="-1" action.resumeInterval="2" action.reportSuspension="on")',
        "}",
        _PARSE,
    ]
    for index, source in enumerate(sources):
        name = f"in_{index}"
        lines += [
            f"# {source.service} ({source.environment}): {source.path}",
            f'ruleset(name="{name}") {{',
            f'  set $.service = "{source.service}";',
            f'  set $.environment = "{source.environment}";',
            f'  set $.slot = "{source.slot or ""}";',
            f'  set $.release = "{source.release or ""}";',
            f'  set $.format = "{source.format}";',
            f'  set $.labels_from_filename = "{"1" if source.labels_from_filename else "0"}";',
            "  call shop_parse",
            "}",
        ]
        extra = ""
        if source.format in ("postgresql", "dagster"):
            # A line that does not start with a date continues the previous one (statements, tracebacks).
            extra = ' startmsg.regex="^[^ ]{0,12}[0-9]{4}-[0-9]{2}-[0-9]{2} " readTimeout="1"'
        lines.append(
            f'input(type="imfile" file={_string(source.path)} tag="{source.service}:" ruleset="{name}"'
            f' addMetadata="on" reopenOnTruncate="on" persistStateInterval="100"{extra})'
        )
        lines.append("")
    return "\n".join(lines)


def write_config(
    server: RsyslogServer, sources: Sequence[LogSource], store: LogStore, rotate: Sequence[Path] = ()
) -> Path:
    """Write `server.config` (and, for a password, a pgpass file beside it), both mode 0600, and
    `server.logrotate_config` (rsyslog's own files and the source files in `rotate`); returns the config's path.

    The password is read from `store.password_file` now and written only to the pgpass file,
    which libpq reads at connect time: the configuration itself can be shown or logged.
    """
    server.folder.mkdir(parents=True, exist_ok=True)
    server.work_dir.mkdir(parents=True, exist_ok=True)
    passfile = None
    if store.password_file is not None:
        try:
            password = store.password_file.read_text().strip()
        except OSError as exc:
            raise LogsError(
                f"the log store's password file {store.password_file} cannot be read ({exc.strerror}): "
                "create it (one line) or leave password_file unset for a trusting server"
            ) from None
        if not password:
            raise LogsError(f"the log store's password file {store.password_file} is empty: write the password in it")
        passfile = server.folder / "pgpass"
        write_pgpass(passfile, store.host, store.port, store.database, store.user, password)
    write_private(server.config, render_config(sources, store, server, passfile))
    write_private(server.logrotate_config, render_logrotate(server, rotate))
    return server.config


def render_logrotate(server: RsyslogServer, files: Sequence[Path] = (), size: str = "20M", keep: int = 5) -> str:
    """logrotate's configuration for rsyslog's own plain files and the given source files no program rotates itself.

    copytruncate everywhere: no program has to reopen anything (rsyslog's inputs reopen a
    truncated file from its start). The output queue in the work directory is not rotated:
    rsyslog bounds it itself (`queue.maxDiskSpace`). Run it with `logrotate -s <state> <file>`.
    """
    paths = [server.internal_log, server.stdout_log, *files]
    quoted = " ".join('"' + str(p).replace("\\", "\\\\").replace('"', '\\"') + '"' for p in paths)
    return (
        "# Rotation of the central log collector's plain files, written by shop-ops "
        "(shop_ops/observability/logs.py).\n"
        f"{quoted} {{\n"
        f"    size {size}\n"
        f"    rotate {keep}\n"
        "    compress\n"
        "    delaycompress\n"
        "    missingok\n"
        "    notifempty\n"
        "    copytruncate\n"
        "}\n"
    )


# ---------------------------------------------------------------------------------------- the table
_DDL = """
CREATE SCHEMA IF NOT EXISTS logs;

CREATE TABLE IF NOT EXISTS logs.records (
    id bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),  -- when rsyslog read the line
    ts timestamptz NOT NULL,                         -- the line's own time, else received_at
    service text NOT NULL,
    environment text NOT NULL,
    slot text,
    release text,
    level text,                                      -- debug, info, notice, warning, error, critical, fatal, panic
    request_id text,
    message text NOT NULL,
    fields jsonb NOT NULL DEFAULT '{}',              -- every key of a JSON line
    source_file text,
    -- an error line's kind: its error code, else its exception's type, else a router's HTTP status
    error_kind text GENERATED ALWAYS AS (
        CASE WHEN level IN ('error', 'critical', 'fatal', 'panic') THEN COALESCE(
            fields ->> 'code',
            fields ->> 'error_code',
            substring(fields ->> 'exc' from '(?:^|\\n)([A-Za-z_][A-Za-z0-9_.]*)(?::[^\\n]*)?\\s*$'),
            CASE WHEN fields ? 'status' THEN 'http_' || (fields ->> 'status') END
        ) END
    ) STORED
);
CREATE INDEX IF NOT EXISTS records_ts ON logs.records (ts);
CREATE INDEX IF NOT EXISTS records_received_at ON logs.records (received_at);
CREATE INDEX IF NOT EXISTS records_request_id ON logs.records (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_errors ON logs.records (ts, error_kind)
    WHERE level IN ('error', 'critical', 'fatal', 'panic');

-- A timestamp, or NULL for anything PostgreSQL cannot read as one: a bad line must not fail its INSERT.
CREATE OR REPLACE FUNCTION logs.try_ts(value text) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF value IS NULL OR value = '' THEN RETURN NULL; END IF;
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN RETURN NULL;
END $$;

-- A JSON object; anything else (or what jsonb refuses, e.g. \\u0000) is kept as {"unparsed": text}.
CREATE OR REPLACE FUNCTION logs.try_jsonb(value text) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    parsed jsonb;
BEGIN
    IF value IS NULL OR btrim(value) IN ('', '{}', '{ }') THEN RETURN '{}'; END IF;
    parsed := value::jsonb;
    IF jsonb_typeof(parsed) = 'object' THEN RETURN parsed; END IF;
    RETURN jsonb_build_object('value', parsed);
EXCEPTION WHEN others THEN RETURN jsonb_build_object('unparsed', replace(value, chr(0), ''));
END $$;

CREATE OR REPLACE FUNCTION logs.norm_level(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN value IS NULL OR value = '' THEN NULL
        WHEN lower(value) IN ('warn', '#') THEN 'warning'
        WHEN lower(value) IN ('err', 'exception') THEN 'error'
        WHEN lower(value) = 'crit' THEN 'critical'
        WHEN lower(value) IN ('log', 'statement', '*') THEN 'info'
        WHEN lower(value) ~ '^debug[0-9]?$' OR value IN ('.', '-') THEN 'debug'
        ELSE lower(value)
    END
$$;

-- Terminal colour codes out, credentials masked (SQL's `PASSWORD '...'` too): a safety net, nothing logs them on purpose.
CREATE OR REPLACE FUNCTION logs.clean(value text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(
        regexp_replace(value, '(\\x1b|#033)\\[[0-9;]*m', '', 'g'),
        '((?:password|passwd|secret|token|api[_-]?key|authorization)(?:\\\\?["''])?\\s*[:=]\\s*(?:\\\\?["''])?(?:bearer\\s+|basic\\s+)?|password\\s+''|bearer\\s+|basic\\s+)[^\\s"'',&;\\\\]+',
        '\\1[redacted]', 'gi')
$$;
"""


@contextmanager
def _connect(dsn: str) -> Iterator[Any]:
    try:
        conn = psycopg2.connect(dsn, connect_timeout=10)
    except psycopg2.OperationalError as exc:
        raise LogsError(f"cannot connect to the log store: {str(exc).strip()}; is its PostgreSQL running?") from None
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def ensure_schema(dsn: str, writer: str | None = None, writer_password: str | None = None) -> None:
    """Create schema `logs`, its table and functions (idempotent); with `writer`, the role rsyslog logs in as.

    The writer may only INSERT into the table (no SELECT, UPDATE or DELETE). `dsn` must be able to
    create schemas and roles (the cluster's superuser, or the database owner without `writer`).
    """
    with _connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET client_min_messages = warning")
        cur.execute(_DDL)
        if writer is None:
            return
        if not _ROLE.match(writer):
            raise LogsError(f"log writer role {writer!r}: use lower-case letters, digits and '_'")
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (writer,))
        if cur.fetchone() is None:
            cur.execute(f"CREATE ROLE {writer} LOGIN")
        if writer_password is not None:
            # A verifier, not the password: the statement may be logged (slow-query log, errors).
            cur.execute(f"ALTER ROLE {writer} PASSWORD %s", (scram_verifier(writer_password),))
        # rsyslog's statements rely on these whatever the server's defaults are.
        cur.execute(f"ALTER ROLE {writer} SET standard_conforming_strings = on")
        cur.execute(f"ALTER ROLE {writer} SET timezone = 'UTC'")
        cur.execute(f"GRANT USAGE ON SCHEMA logs TO {writer}")
        cur.execute(f"GRANT INSERT ON logs.records TO {writer}")
        cur.execute(f"GRANT USAGE ON SEQUENCE logs.records_id_seq TO {writer}")


def delete_older_than(dsn: str, days: float) -> int:
    """Retention: delete the rows received more than `days` ago; how many went."""
    if days <= 0:
        raise LogsError(f"log retention must be a positive number of days, not {days}")
    with _connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM {TABLE} WHERE received_at < now() - %s * interval '1 day'", (days,))
        return int(cur.rowcount)


# ---------------------------------------------------------------------------------------- queries
@dataclass(frozen=True)
class LogRecord:
    """One stored line."""

    id: int
    received_at: datetime
    ts: datetime
    service: str
    environment: str
    slot: str | None
    release: str | None
    level: str | None
    request_id: str | None
    message: str
    fields: dict[str, Any]
    source_file: str | None
    error_kind: str | None


def records(
    dsn: str,
    request_id: str | None = None,
    service: str | None = None,
    environment: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    level: str | None = None,
    limit: int = 1000,
) -> list[LogRecord]:
    """Stored lines matching every filter given, oldest first (by their own time), at most `limit`."""
    where, params = [], []
    for column, value in (("request_id", request_id), ("service", service), ("environment", environment),
                          ("level", level)):  # fmt: skip
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if since is not None:
        where.append("ts >= %s")
        params.append(since)
    if until is not None:
        where.append("ts < %s")
        params.append(until)
    sql = (
        "SELECT id, received_at, ts, service, environment, slot, release, level, request_id, message, fields,"
        f" source_file, error_kind FROM {TABLE}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY ts, id LIMIT %s"
    )
    with _connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, [*params, limit])
        return [LogRecord(*row) for row in cur.fetchall()]


def slow_queries(
    dsn: str, environment: str | None = None, since: datetime | None = None, limit: int = 1000
) -> list[LogRecord]:
    """PostgreSQL's slow-query lines (fields `kind` = slow_query, `duration_ms`), slowest first, at most `limit`."""
    sql = (
        "SELECT id, received_at, ts, service, environment, slot, release, level, request_id, message, fields,"
        f" source_file, error_kind FROM {TABLE} WHERE fields ->> 'kind' = 'slow_query'"
        + (" AND environment = %s" if environment else "")
        + (" AND ts >= %s" if since else "")
        + " ORDER BY CASE WHEN jsonb_typeof(fields -> 'duration_ms') = 'number'"
        " THEN (fields ->> 'duration_ms')::float8 END DESC NULLS LAST, id LIMIT %s"
    )
    params = [value for value in (environment, since) if value] + [limit]
    with _connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return [LogRecord(*row) for row in cur.fetchall()]


def _minute(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def error_counts_per_minute(
    dsn: str, since: datetime, until: datetime, environment: str | None = None
) -> dict[datetime, int]:
    """Error lines (error, critical, fatal, panic) per UTC minute from `since`'s minute up to `until` (excluded), zeros included."""
    start, end = _minute(since), until.astimezone(UTC)
    sql = (
        "SELECT date_trunc('minute', ts AT TIME ZONE 'UTC'), count(*) FROM logs.records"
        " WHERE level IN ('error', 'critical', 'fatal', 'panic') AND ts >= %s AND ts < %s"
        + (" AND environment = %s" if environment else "")
        + " GROUP BY 1"
    )
    params: list[Any] = [start, end] + ([environment] if environment else [])
    with _connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        found = {minute.replace(tzinfo=UTC): int(count) for minute, count in cur.fetchall()}
    return per_minute(found, since, until)


def per_minute(found: Mapping[datetime, int], since: datetime, until: datetime) -> dict[datetime, int]:
    """Every UTC minute from `since`'s up to `until` (excluded) with its count in `found`, 0 where it has none."""
    counts, minute, end = {}, _minute(since), until.astimezone(UTC)
    while minute < end:
        counts[minute] = found.get(minute, 0)
        minute += timedelta(minutes=1)
    return counts


def error_kinds(dsn: str, since: datetime, until: datetime, environment: str | None = None) -> dict[str, int]:
    """Error lines per kind (error code, exception type, or a router's http_<status>) between `since` and `until`."""
    sql = (
        "SELECT error_kind, count(*) FROM logs.records WHERE level IN ('error', 'critical', 'fatal', 'panic')"
        " AND error_kind IS NOT NULL AND ts >= %s AND ts < %s"
        + (" AND environment = %s" if environment else "")
        + " GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    params: list[Any] = [since, until] + ([environment] if environment else [])
    with _connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return {kind: int(count) for kind, count in cur.fetchall()}


# ---------------------------------------------------------------------------------------- log alerts
@dataclass(frozen=True)
class ErrorSpike:
    """The last whole minute had `count` error lines against `baseline` per minute over the hour before it."""

    minute: datetime
    count: int
    baseline: float


def spike_window(now: datetime) -> tuple[datetime, datetime]:
    """The minutes an error-spike check reads: the hour before the last whole minute, and that minute."""
    end = _minute(now)
    return end - timedelta(minutes=61), end


def error_spike(
    per_minute: Mapping[datetime, int], now: datetime, threshold: int, factor: float = SPIKE_FACTOR
) -> ErrorSpike | None:
    """An error spike, or None: the last whole minute before `now` has more than `threshold` error lines
    AND more than `factor` times the previous hour's average per minute (minutes missing count 0)."""
    if threshold < 0:
        raise LogsError(f"the error-spike threshold must be 0 or more lines per minute, not {threshold}")
    start, end = spike_window(now)
    last = end - timedelta(minutes=1)
    count = per_minute.get(last, 0)
    previous = [per_minute.get(start + timedelta(minutes=i), 0) for i in range(60)]
    baseline = sum(previous) / 60
    if count > threshold and count > factor * baseline:
        return ErrorSpike(last, count, baseline)
    return None


def new_error_kinds(
    current: Mapping[str, int] | Sequence[str], seen_before: Mapping[str, int] | Sequence[str]
) -> list[str]:
    """Error kinds in `current` that `seen_before` (the 7 days before) does not have, sorted."""
    return sorted(set(current) - set(seen_before))


def new_kind_window(since: datetime) -> tuple[datetime, datetime]:
    """The lookback a new kind is checked against: the 7 days before `since`."""
    return since - NEW_KIND_LOOKBACK, since
