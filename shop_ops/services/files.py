"""Small file-system helpers: writes that must survive a crash (fsync the folder after a rename), secret files."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Flush `folder`'s entries (a rename into it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, text: str, owner: str | None = None) -> None:
    """Write `text` to `path` readable by its owner only (0600 from the first byte), replacing it atomically;
    `owner`: hand it to that OS user (a service that runs as its own user reads it)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    if owner:
        shutil.chown(tmp, owner, owner)
    os.replace(tmp, path)


def write_public(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, mode 0644 from the first byte (certificates, trust bundles), flushed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)  # whatever the umask: others (nginx's workers, clients) read it
    os.replace(tmp, path)


def write_pgpass(
    path: Path, host: str, port: int, database: str, user: str, password: str, owner: str | None = None
) -> None:
    """A libpq password file (`passfile`) with one entry, `:` and `\\` escaped, mode 0600 from the first byte."""
    fields = (host, str(port), database, user, password)
    write_private(path, ":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields) + "\n", owner)


def ensure_secret_file(path: Path, group: int | None = None) -> None:
    """A random secret (32 URL-safe characters) in `path` unless it has one: 0600, or 0640 owned by root and
    `group` when given (as root), for the containers that read it as their group. Written straight into
    the file, never into a log."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if group is None else 0o640)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    if group is not None and os.geteuid() == 0:
        os.chown(path, 0, group)


def replace_secret_file(path: Path, group: int | None = None) -> None:
    """A new random secret in `path`, replacing what it held atomically (a reader sees the old secret or the
    new one, never a partial file): 0600, or 0640 owned by root and `group` when given (as root). Written
    straight into the file, never into a log; a rotation's new password."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if group is None else 0o640)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(24))
        fh.flush()
        os.fsync(fh.fileno())
    if group is not None and os.geteuid() == 0:
        os.chown(tmp, 0, group)
    os.replace(tmp, path)
    fsync_dir(path.parent)
