"""Finds new releases in the registry (a version tag on both the backend and frontend repositories) for the push sensor.

Plain functions over `RegistryClient` (or ECR's API, `EcrImages`), no Dagster: `registry_push_sensor` calls `scan` each tick
and turns every `ReleaseCandidate` into a `release_staging` run request with its `run_key`.

Rules:

- A release is a `MAJOR.MINOR.PATCH` tag (no leading zeros, no prefix or suffix) present in BOTH
  repositories. Build tags (`0.1.0-abc1234`), `latest`, `main` ... are skipped with the reason; a
  version in only one repository is skipped as waiting for the other one.
- A release's key is its `run_key`: `release:<version>:<backend digest>:<frontend digest>`. It is
  deterministic, so Dagster's run_key deduplication also stops a second run when the cursor is
  lost (daemon restart mid-tick, garbage cursor).
- The cursor holds the keys already requested; a key in the cursor is never yielded again.
- A new version tag on a digest pair already requested (a re-tag: `0.2.1` put on the very images
  of `0.2.0`) is NOT a new release: the same images were already deployed and verified (or failed)
  on staging, so deploying them again under another name proves nothing. It is skipped with the
  version it duplicates. Within one scan, the lowest version of a digest pair wins.
- A version tag moved to other digests (`0.2.0` re-pushed with different images) IS a new release:
  different images must go through staging. Its key differs because the digests do.
- Several new releases in one scan come out in ascending version order, so staging ends on the newest.
- Registry down or answering garbage: `error` says what failed, no releases, the cursor comes back
  unchanged (the next tick tries again).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Protocol

import httpx

from shop_ops.resources.registry import RegistryError


class WatchedRegistry(Protocol):
    """What a scan reads: `RegistryClient` (the distribution API) or `EcrImages` (ECR's API, aws profile)."""

    @property
    def url(self) -> str: ...
    def tags(self, repository: str) -> list[str]: ...
    def manifest_digest(self, repository: str, reference: str) -> str | None: ...


CURSOR_FORMAT = 1
RELEASE_TAG = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
KEY_PREFIX = "release:"
# What a registry that answers garbage makes the client raise (bad JSON, missing header, wrong shape).
_GARBAGE = (ValueError, KeyError, TypeError, AttributeError)


def release_version(tag: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) when `tag` is a release version, else None."""
    match = RELEASE_TAG.match(tag)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def release_key(version: str, backend_digest: str, frontend_digest: str) -> str:
    """The release's run_key: the version and both manifest digests."""
    return f"{KEY_PREFIX}{version}:{backend_digest}:{frontend_digest}"


def _digest_pair(key: str) -> tuple[str, str, str] | None:
    """(version, backend digest, frontend digest) of a release key, None when it is not one."""
    if not key.startswith(KEY_PREFIX):
        return None
    version, sep, digests = key.removeprefix(KEY_PREFIX).partition(":")
    parts = digests.split(":")  # sha256:<hex>:sha256:<hex>
    if not sep or len(parts) != 4:
        return None
    backend, frontend = ":".join(parts[:2]), ":".join(parts[2:])
    if release_version(version) is None or not DIGEST.match(backend) or not DIGEST.match(frontend):
        return None
    return version, backend, frontend


@dataclass(frozen=True)
class WatchCursor:
    """The release keys already requested. `note` says why a stored cursor was not used (not serialized)."""

    requested: frozenset[str] = frozenset()
    note: str | None = field(default=None, compare=False)

    def to_json(self) -> str:
        return json.dumps({"format": CURSOR_FORMAT, "requested": sorted(self.requested)}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> WatchCursor:
        """The cursor stored by `to_json`; empty, with `note` saying why, when `text` is empty or not one."""
        if not text or not text.strip():
            return cls(note="no cursor yet: every release in the registry counts as new")
        try:
            data = json.loads(text)
        except ValueError:
            return cls(
                note=f"cursor is not JSON ({text[:40]!r}): starting empty; run_key deduplication prevents repeats"
            )
        if not isinstance(data, dict) or data.get("format") != CURSOR_FORMAT:
            return cls(note=f"cursor is not a format-{CURSOR_FORMAT} watch cursor: starting empty")
        keys = data.get("requested")
        if not isinstance(keys, list) or not all(isinstance(k, str) and _digest_pair(k) for k in keys):
            return cls(note="cursor's 'requested' is not a list of release keys: starting empty")
        return cls(frozenset(keys))

    def add(self, *keys: str) -> WatchCursor:
        return WatchCursor(self.requested | set(keys))

    def requested_pairs(self) -> dict[tuple[str, str], str]:
        """(backend digest, frontend digest) -> the version requested with them."""
        pairs: dict[tuple[str, str], str] = {}
        for key in sorted(self.requested):
            parsed = _digest_pair(key)
            if parsed is not None:
                version, backend, frontend = parsed
                pairs.setdefault((backend, frontend), version)
        return pairs


@dataclass(frozen=True)
class ReleaseCandidate:
    version: str
    backend_digest: str
    frontend_digest: str
    run_key: str


@dataclass
class ScanResult:
    """What one scan found. `cursor` is the one to store (unchanged when `error` is set)."""

    new_releases: list[ReleaseCandidate]
    skipped: list[str]
    cursor: WatchCursor
    error: str | None = None
    known: list[str] = field(default_factory=list)  # versions already requested (not repeated)
    notes: list[str] = field(default_factory=list)  # e.g. why the stored cursor was not used


def _digest(registry: WatchedRegistry, repository: str, tag: str) -> str | None:
    digest = registry.manifest_digest(repository, tag)
    if digest is not None and not DIGEST.match(digest):
        raise ValueError(f"registry answered {digest[:80]!r} as the digest of {repository}:{tag}")
    return digest


def scan(registry: WatchedRegistry, backend_repo: str, frontend_repo: str, cursor: WatchCursor) -> ScanResult:
    """The releases in the registry that are not in `cursor` yet, and the cursor that includes them."""
    notes = [cursor.note] if cursor.note else []
    try:
        return _scan(registry, backend_repo, frontend_repo, cursor, notes)
    except RegistryError as exc:
        error = str(exc)
    except httpx.HTTPError as exc:
        error = f"registry {registry.url} failed: {type(exc).__name__}: {exc}"
    except _GARBAGE as exc:
        error = (
            f"registry {registry.url} answered something that is not the distribution API: {type(exc).__name__}: {exc}"
        )
    return ScanResult(new_releases=[], skipped=[], cursor=cursor, error=error, notes=notes)


def _scan(
    registry: WatchedRegistry, backend_repo: str, frontend_repo: str, cursor: WatchCursor, notes: list[str]
) -> ScanResult:
    tags = {"backend": set(registry.tags(backend_repo)), "frontend": set(registry.tags(frontend_repo))}
    if any(not isinstance(t, str) for values in tags.values() for t in values):
        raise TypeError("tags list holds non-string entries")
    repos = {"backend": backend_repo, "frontend": frontend_repo}
    skipped: list[str] = []
    versions: list[tuple[tuple[int, int, int], str]] = []
    for role, other in (("backend", "frontend"), ("frontend", "backend")):
        for tag in sorted(tags[role]):
            parsed = release_version(tag)
            if parsed is None:
                skipped.append(f"{repos[role]}:{tag}: not a release version (MAJOR.MINOR.PATCH)")
            elif tag not in tags[other]:
                skipped.append(f"{repos[role]}:{tag}: waiting for the {other} {tag} ({repos[other]}:{tag} missing)")
            elif role == "backend":
                versions.append((parsed, tag))

    known_pairs = cursor.requested_pairs()
    new: list[ReleaseCandidate] = []
    known: list[str] = []
    for _, version in sorted(versions):
        backend = _digest(registry, backend_repo, version)
        frontend = _digest(registry, frontend_repo, version)
        if backend is None or frontend is None:  # deleted between the tag list and the manifest request
            skipped.append(f"{version}: a tag disappeared while scanning; next tick looks again")
            continue
        key = release_key(version, backend, frontend)
        if key in cursor.requested:
            known.append(version)
            continue
        first = known_pairs.get((backend, frontend))
        if first is not None:
            skipped.append(f"{version}: same images as release {first} (re-tag), not a new release")
            continue
        known_pairs[(backend, frontend)] = version
        new.append(ReleaseCandidate(version, backend, frontend, key))
    next_cursor = cursor.add(*(c.run_key for c in new))
    return ScanResult(new_releases=new, skipped=skipped, cursor=next_cursor, known=known, notes=notes)
