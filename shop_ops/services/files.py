"""Small file-system helpers: writes that must survive a crash (fsync the folder after a rename), secret files."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Flush `folder`'s entries (a rename into it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
