"""Dagster stores nothing secret: event log storage and compute-log capture that redact, and the code location's hook.

Wired through Dagster's pluggable instance classes (dagster.yaml), so every asset, op, sensor and
check of the code location is covered without any of them taking care:

- `RedactingSqliteEventLogStorage` (local) and `RedactingPostgresEventLogStorage`
  (shop_ops/security/redaction_aws.py, aws): every event is redacted before it is written:
  run logs (`context.log`), step failures (the error, its cause chain and stack), materialization and
  check metadata, engine events. The asset index is built from the same redacted event.
- `RedactingComputeLogManager` (and `RedactingS3ComputeLogManager` on aws, which uploads what it
  captured): a step's stdout and stderr are captured below Python (its file descriptors, so child
  processes and C code too) through a pipe, redacted line by line on the way into the compute-log
  files (and mirrored, redacted, to the process's own output).
  Sensor and schedule tick logs (written through `open_log_stream`) are redacted line by line too.
- `install_redaction`: called when the code location loads (definitions.py); remembers the secret
  files of the state's `secrets/` and the SHOP_OPS_* secret variables, and wraps sys.stdout/stderr.

What to redact is the one redactor's (shop_ops/services/redaction.py): values this process read
(the `secrets` resource, the notifier), the files and variables above, and credential-shaped text.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import dagster as dg
from dagster._config import Field, StringSource
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import touch_file

from shop_ops.services.redaction import (
    RedactingStream,
    redact,
    redact_tree,
    redacted_fd,
    remember_environment,
    remember_files,
)


def redact_event(event: dg.EventLogEntry) -> dg.EventLogEntry:
    """The event with every string in it redacted (message, error and cause chain, metadata), via its serialized form."""
    tree = json.loads(dg.serialize_value(event))
    clean = redact_tree(tree)
    if clean == tree:
        return event
    return dg.deserialize_value(json.dumps(clean), dg.EventLogEntry)


class RedactingEventLogMixin:
    """Redacts each event before the storage below writes it (one event, or a batch)."""

    def store_event(self, event: dg.EventLogEntry) -> None:
        super().store_event(redact_event(event))  # type: ignore[misc]

    def store_event_batch(self, events: Sequence[dg.EventLogEntry]) -> None:
        super().store_event_batch([redact_event(event) for event in events])  # type: ignore[misc]


def _dagster_home(*parts: str) -> str:
    """A folder under DAGSTER_HOME, where Dagster's own SQLite storage and compute logs keep it."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise RuntimeError("the redacting storage needs `base_dir` in its config or DAGSTER_HOME: set either")
    return str(Path(home, *parts))


class RedactingSqliteEventLogStorage(RedactingEventLogMixin, SqliteEventLogStorage):
    """Dagster's SQLite event log (default folder: DAGSTER_HOME/history/runs, as Dagster's own), redacted."""

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir or _dagster_home("history", "runs"), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Any:
        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> RedactingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)


class _RedactingJsonLines(io.TextIOBase):
    """A text stream of JSON lines: each line's strings redacted in place (other text: redacted as text)."""

    def __init__(self, inner: IO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        lines = []
        for line in text.splitlines(keepends=True):
            try:
                clean = json.dumps(redact_tree(json.loads(line)), default=str, sort_keys=True) + "\n"
            except ValueError:
                clean = redact(line)
            lines.append(clean)
        self.inner.write("".join(lines))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()


class RedactingComputeLogManager(LocalComputeLogManager):
    """Dagster's local compute logs (same folder layout and UI; default folder DAGSTER_HOME/storage), written
    through the redactor."""

    def __init__(
        self,
        base_dir: str | None = None,
        polling_timeout: float | None = None,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        super().__init__(base_dir or _dagster_home("storage"), polling_timeout=polling_timeout, inst_data=inst_data)

    @classmethod
    def config_type(cls) -> Any:
        return {"base_dir": Field(StringSource, is_required=False), "polling_timeout": Field(float, is_required=False)}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> RedactingComputeLogManager:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def open_log_stream(self, log_key: Sequence[str], io_type: ComputeIOType) -> Iterator[IO | None]:
        """Sensor and schedule tick logs (JSON lines written by Dagster's instigation logger), redacted."""
        with super().open_log_stream(log_key, io_type) as stream:
            yield _RedactingJsonLines(stream) if stream is not None else None

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Iterator[CapturedLogContext]:
        out = Path(self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT]))
        err = Path(self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR]))
        with redacted_fd(sys.stdout, out), redacted_fd(sys.stderr, err):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))


def install_redaction(secret_paths: Sequence[Path] = (), environ: Mapping[str, str] = os.environ) -> list[str]:
    """Remember the secrets of `secret_paths` (folders of secret files, or files) and the SHOP_OPS_* secret
    variables; wrap sys.stdout/stderr (once). Returns the names remembered (never values), for a log line."""
    names = remember_environment(environ)
    for path in secret_paths:
        names += remember_files(path)
    if not isinstance(sys.stdout, RedactingStream):
        sys.stdout = RedactingStream(sys.stdout)
    if not isinstance(sys.stderr, RedactingStream):
        sys.stderr = RedactingStream(sys.stderr)
    return names
