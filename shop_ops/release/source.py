"""What is being released: the semver in ./VERSION, the git commit and the source URL of the working tree."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shop_ops.settings import ROOT

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class SourceError(RuntimeError):
    """VERSION is missing or not MAJOR.MINOR.PATCH."""


@dataclass(frozen=True)
class Source:
    version: str
    git_commit: str
    source_url: str
    dirty: bool

    @property
    def candidate_tag(self) -> str:
        """The tag every push gets: <version>-<short sha>."""
        return f"{self.version}-{self.git_commit}"


def read_version(root: Path = ROOT) -> str:
    path = root / "VERSION"
    try:
        version = path.read_text().strip()
    except FileNotFoundError:
        raise SourceError(f"{path} is missing: it holds the release version MAJOR.MINOR.PATCH") from None
    if not SEMVER.match(version):
        raise SourceError(f"{path} holds {version!r}: the release version must be MAJOR.MINOR.PATCH, e.g. 1.4.0")
    return version


def _git(root: Path, *args: str) -> str | None:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def current_source(root: Path = ROOT) -> Source:
    """VERSION plus `git rev-parse --short HEAD` ("unknown" before the first commit), as build-images.sh reads them."""
    remote = _git(root, "remote", "get-url", "origin") or "unknown"
    remote = re.sub(r"://[^/@]+@", "://", remote)  # no credentials in labels
    return Source(
        version=read_version(root),
        git_commit=_git(root, "rev-parse", "--short", "HEAD") or "unknown",
        source_url=remote,
        dirty=bool(_git(root, "status", "--porcelain", "--untracked-files=no")),
    )
