"""The one redactor: secret values this process knows (placeholders refused on entry) and credential-shaped text, masked.

Every secret the pipeline reads passes `accept_secret(name, value)`: a placeholder or a known
default (`CHANGE_ME`, the dev example's password) is refused naming the variable, anything else
is remembered in the process's `KNOWN_SECRETS`. `redact` masks the remembered values (and the
values given to it) and whatever looks like a credential (URL passwords, bearer tokens,
`password=...`, Slack webhook paths, AWS key ids). Dagster's storage, compute-log capture, alerts and
command output all go through it (shop_ops/security/redaction.py wires Dagster to it).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TextIO

MASK = "***"
# Shorter values are not masked: they would mask common words (and no real secret is this short).
MIN_SECRET_CHARS = 4

# A key naming a credential; not one naming where a credential is kept (`password_file`, `tokens_dir`): paths are
# what operators need to see (`shop-ops local status` prints them).
_KEYS = (
    r"[\w.-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?|authorization)"
    r"[\w.-]*(?<!file)(?<!files)(?<!path)(?<!dir)(?<!folder)"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # URLs with user:password@ (postgresql://shop:hunter2@db/shop) keep the user, lose the password
    (re.compile(r"(?P<pre>[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE), rf"\g<pre>{MASK}@"),
    # Authorization headers and bearer tokens
    (re.compile(r"\b(?P<pre>(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\g<pre>{MASK}"),
    # key=value, key: value, "key": "value" for keys that name a credential
    (
        re.compile(
            rf"(?P<pre>\b{_KEYS}[\"']?\s*[:=]\s*)(?P<q>[\"']?)(?!{re.escape(MASK)})[^\s\"',;&)}}\]]+",
            re.IGNORECASE,
        ),
        rf"\g<pre>\g<q>{MASK}",
    ),
    # Slack incoming-webhook paths and AWS access key ids
    (re.compile(r"hooks\.slack\.com/\S+", re.IGNORECASE), f"hooks.slack.com/{MASK}"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),
)

# SHOP_OPS_* variables whose values are secrets (SHOP_OPS_SMTP_PASSWORD, SHOP_OPS_SLACK_WEBHOOK_URL, ...).
SECRET_VARIABLE = re.compile(r"^SHOP_OPS_\w*(?:PASSWORD|TOKEN|SECRET|KEY|WEBHOOK_URL)$")
# Placeholders and published defaults: never accepted as a secret (the shop's backend refuses the same).
_PLACEHOLDER = re.compile(r"change[_ -]?me|replace[_ -]?me|^<[^>]*>$", re.IGNORECASE)
KNOWN_DEFAULTS = frozenset({"shop-dev-only"})  # .env.dev.example's password


class PlaceholderSecretError(ValueError):
    """A secret input holds a placeholder or a published default; the message names the variable and the fix."""


class KnownSecrets:
    """The secret values this process has read, to be masked wherever text leaves it (thread-safe)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if value and len(value) >= MIN_SECRET_CHARS:
            with self._lock:
                self._values.add(value)

    def values(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._values)

    def discard(self, value: str) -> None:
        with self._lock:
            self._values.discard(value)


KNOWN_SECRETS = KnownSecrets()


def placeholder_problem(value: str) -> str | None:
    """Why `value` cannot be a secret (a placeholder or a published default), or None."""
    stripped = value.strip()
    if not stripped:
        return "is empty"
    if _PLACEHOLDER.search(stripped) or stripped in KNOWN_DEFAULTS:
        return f'is a placeholder ("{stripped}")'
    return None


def accept_secret(name: str, value: str) -> str:
    """`value`, remembered for redaction; PlaceholderSecretError (naming `name`) for a placeholder or known default."""
    problem = placeholder_problem(value)
    if problem:
        raise PlaceholderSecretError(f"{name} {problem}: set a real secret (see docs/security.md)")
    KNOWN_SECRETS.add(value)
    return value


def remember_environment(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Remember the values of the SHOP_OPS_* secret variables (SECRET_VARIABLE) and the files their `_FILE`
    forms name (SHOP_OPS_SMTP_PASSWORD_FILE, SHOP_OPS_BACKUP_KEY_FILE, SHOP_OPS_REGISTRY_CREDENTIALS_FILE, ...);
    returns the variables' names."""
    names = []
    for name, value in sorted(environ.items()):
        if not value:
            continue
        if SECRET_VARIABLE.match(name):
            KNOWN_SECRETS.add(value.strip())
            names.append(name)
        elif name.endswith("_FILE") and (
            SECRET_VARIABLE.match(name.removesuffix("_FILE")) or name.endswith("_CREDENTIALS_FILE")
        ):
            if remember_file(Path(value)):
                names.append(name)
    return names


def remember_file(path: Path) -> bool:
    """Remember the secret in file `path` (False if it cannot be read): its text and each line; a libpq
    password file's password fields; a JSON object's credential values (`password`, `token`, ...)."""
    try:
        if not path.is_file() or path.stat().st_size > 65536:
            return False
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return False
    document = None
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
    if isinstance(document, dict):
        for key, value in document.items():
            if isinstance(value, str) and re.fullmatch(_KEYS, key, re.IGNORECASE):
                KNOWN_SECRETS.add(value)
        return True
    KNOWN_SECRETS.add(text)
    for line in text.splitlines():
        KNOWN_SECRETS.add(line.strip())
        if path.suffix == ".pgpass":
            KNOWN_SECRETS.add(re.split(r"(?<!\\):", line)[-1].replace("\\:", ":").replace("\\\\", "\\"))
    return True


# Files of the secrets folder that hold no secret: `<env>-db-login` names the login role that serves
# (shop_a or shop_b, shop_ops/services/db_logins.py); masking it would hide role names in reports.
NOT_SECRET_FILES = ("-db-login",)


def remember_files(path: Path) -> list[str]:
    """Remember the secret files at `path` (a file, or every secret file in a folder); returns the names remembered."""
    files = [f for f in sorted(path.iterdir()) if not f.name.endswith(NOT_SECRET_FILES)] if path.is_dir() else [path]
    return [file.name for file in files if remember_file(file)]


def _forms(secret: str) -> list[str]:
    """The secret as written, and as it appears inside JSON or a Python repr (escaped)."""
    forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1]}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` without the given secret values, the process's known secrets, and anything that looks like a credential."""
    values = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS} | set(KNOWN_SECRETS.values())
    for secret in sorted(values, key=len, reverse=True):
        for form in _forms(secret):
            text = text.replace(form, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_tree(value: Any) -> Any:
    """Every string in a JSON-like tree (dicts, lists) redacted; keys and other values kept."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    return value


class RedactingStream(io.TextIOBase):
    """A text stream (sys.stdout, sys.stderr) that redacts each write before passing it on.

    Writes are redacted as they come: a secret split across two writes of one line is not seen
    (print() writes a line at once; the compute-log capture redacts whole lines below Python)."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        self.inner.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def fileno(self) -> int:
        return self.inner.fileno()

    def isatty(self) -> bool:
        return self.inner.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        # Anything else (buffer, mode, name, ...) is the inner stream's: bytes written to its buffer are
        # not redacted here (the compute-log capture below Python still redacts them).
        return getattr(self.inner, name)


def _pump(source: int, sinks: Sequence[IO[bytes]], max_pending: int = 65536) -> None:
    """Copy `source` (a pipe) to `sinks` a line at a time, redacted, until every writer has closed it."""
    pending = b""
    keep = 4096  # a line this long is passed on in part, holding back its tail (a secret may straddle)

    def emit(chunk: bytes) -> None:
        out = redact(chunk.decode("utf-8", "replace")).encode()
        for sink in sinks:
            try:
                sink.write(out)
                sink.flush()
            except (OSError, ValueError):
                pass

    with os.fdopen(source, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if not cut and len(pending) > max_pending:
                cut = len(pending) - keep
            if cut:
                emit(pending[:cut])
                pending = pending[cut:]
    if pending:
        emit(pending)


@contextmanager
def redacted_fd(stream: TextIO, path: Path, mirror: bool = True, drain_seconds: float = 5) -> Iterator[None]:
    """While inside, everything written to `stream`'s file descriptor (by Python, C code or child processes)
    lands in `path` redacted, line by line, and on the original descriptor too when `mirror`."""
    fd = stream.fileno()
    stream.flush()
    saved = os.dup(fd)
    read_end, write_end = os.pipe()
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "ab")
    sinks: list[IO[bytes]] = [log]
    original = os.fdopen(os.dup(saved), "wb", buffering=0) if mirror else None
    if original:
        sinks.append(original)
    pump = threading.Thread(target=_pump, args=(read_end, sinks), name=f"redact-fd{fd}", daemon=True)
    pump.start()
    os.dup2(write_end, fd)
    os.close(write_end)
    try:
        yield
    finally:
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, fd)
        os.close(saved)
        # A child that still holds the pipe (a daemon it started) keeps the pump alive; it keeps redacting.
        pump.join(drain_seconds)
        if not pump.is_alive():
            log.close()
            if original:
                original.close()


class CommandError(RuntimeError):
    """A command failed; the message (redacted) names it and quotes the end of its output."""


def run_redacted(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
    timeout: float | None = None, input_text: str | None = None, tail_chars: int = 2000,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run `command` with its output captured, returned redacted; CommandError (redacted) if it exits non-zero.

    Secrets go to a command through its environment or stdin (`input_text`), never its arguments."""
    result = subprocess.run(
        list(command), env=dict(env) if env is not None else None, cwd=cwd, timeout=timeout, input=input_text,
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    stdout, stderr = redact(result.stdout), redact(result.stderr)
    if result.returncode != 0:
        said = (stderr.strip() or stdout.strip())[-tail_chars:]
        raise CommandError(f"{redact(command[0])} exited with {result.returncode}: {said or '(no output)'}")
    return subprocess.CompletedProcess(result.args, result.returncode, stdout, stderr)
