"""Where backups are kept: a local folder or S3 (with a second copy in another bucket/region), a catalog and retention.

`BackupStore` is the plain interface the backup code and tests use; `FolderStore` and `S3Store`
implement it and `BackupStoreResource` (resource key `backup_store`) hands out the one its
fields describe. Callers never ask which.

Objects are files under keys (`<env>/<YYYY-MM-DD>/<run>/<name>`, see `object_key`). A key is
written once: `put` refuses to overwrite, so a rerun of a day writes new keys and never
touches what an existing catalog entry points at.

The catalog says which backups exist: one JSON entry per environment and day,
`catalog/<env>/<YYYY-MM-DD>.json`, naming each object with its location, size and sha256. An
entry is written only after every object it names is stored and checked (`write_entry`
checks), and atomically (a rename; an S3 PUT), so a crash leaves at worst objects no entry
names (orphans, `orphans`/`remove_orphans`), never an entry naming an incomplete backup.
Deleting goes the other way round for the same reason: the entry first, then its objects.

Retention (`plan_prune`, `BackupStore.prune`): keep the newest `daily` backups and the
newest of each of the last `monthly` months, and never delete the newest verified backup.

No credentials here: S3 clients find them through the AWS default chain (as `AwsResource`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import boto3
import dagster as dg
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, NoCredentialsError
from botocore.exceptions import ConnectionError as BotoCoreConnectionError
from pydantic import Field

from shop_ops.services.files import fsync_dir

CATALOG = "catalog"
CATALOG_VERSION = 1
CHUNK = 1 << 20
PARTIAL = ".partial-"  # temp files of the folder store: `.<name>.partial-<hex>`
ORPHAN_MIN_AGE = timedelta(hours=12)  # younger unnamed objects may belong to a backup still being written
MULTIPART_THRESHOLD = 64 << 20
_ENV = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
T = TypeVar("T")


class StoreError(RuntimeError):
    """The backup store refused or failed an operation; the message names the store, the key and what changed."""


@dataclass(frozen=True)
class StoredObject:
    """One stored file: its key, where it is (a path or s3:// URI, and the second copy's), its size and sha256."""

    key: str
    location: str
    bytes: int
    sha256: str
    copy_location: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "location": self.location, "bytes": self.bytes, "sha256": self.sha256,
            "copy_location": self.copy_location,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredObject:
        return cls(
            key=str(data["key"]), location=str(data["location"]), bytes=int(data["bytes"]),
            sha256=str(data["sha256"]), copy_location=data.get("copy_location"),
        )  # fmt: skip


@dataclass(frozen=True)
class ListedObject:
    """A key found in the store, with its size and last modification (UTC)."""

    key: str
    bytes: int
    modified: datetime


@dataclass(frozen=True)
class CatalogEntry:
    """One environment's backup of one day: its objects (e.g. "dump", "fingerprint"), when made, when verified.

    `metadata` holds what the pipeline adds (WAL range, release, seconds, key id...): JSON
    values only, never a secret.
    """

    env: str
    date: date
    objects: dict[str, StoredObject]
    created_at: datetime
    verified_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return catalog_key(self.env, self.date)

    @property
    def verified(self) -> bool:
        return self.verified_at is not None

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": CATALOG_VERSION,
                "env": self.env,
                "date": self.date.isoformat(),
                "objects": {name: obj.to_dict() for name, obj in sorted(self.objects.items())},
                "created_at": self.created_at.isoformat(),
                "verified_at": self.verified_at.isoformat() if self.verified_at else None,
                "metadata": self.metadata,
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> CatalogEntry:
        """The entry in `text`; `source` (its key or location) names it in the error if it is not one."""
        try:
            data = json.loads(text)
            if data.get("version") != CATALOG_VERSION:
                raise StoreError(
                    f"catalog entry {source} has format version {data.get('version')!r}; this shop-ops reads "
                    f"version {CATALOG_VERSION} (a newer shop-ops wrote it?)"
                )
            return cls(
                env=str(data["env"]),
                date=date.fromisoformat(data["date"]),
                objects={str(name): StoredObject.from_dict(obj) for name, obj in data["objects"].items()},
                created_at=datetime.fromisoformat(data["created_at"]),
                verified_at=datetime.fromisoformat(data["verified_at"]) if data.get("verified_at") else None,
                metadata=dict(data.get("metadata") or {}),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(
                f"catalog entry {source} is not a valid entry ({type(exc).__name__}: {exc}): repair it from the "
                "objects it names, or delete it (its objects then become orphans)"
            ) from None


@dataclass(frozen=True)
class PrunePlan:
    """What retention keeps and deletes, with a reason per day; `executed` once `prune` carried it out."""

    keep: tuple[CatalogEntry, ...]
    delete: tuple[CatalogEntry, ...]
    reasons: dict[date, str]
    executed: bool = False


def catalog_key(env: str, day: date) -> str:
    return f"{CATALOG}/{_check_env(env)}/{day.isoformat()}.json"


def object_key(env: str, day: date, run: str, name: str) -> str:
    """The key of one file of one backup attempt: `<env>/<day>/<run>/<name>` (a rerun gets another `run`)."""
    return _check_key(f"{_check_env(env)}/{day.isoformat()}/{run}/{name}")


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique name for one backup attempt: `20260102T030405Z-1a2b3c`."""
    return f"{(now or datetime.now(UTC)).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def _check_env(env: str) -> str:
    if not _ENV.match(env):
        raise StoreError(f"environment name {env!r} must be lowercase letters, digits, '-' or '_'")
    return env


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"object key {key!r} must be a relative path of non-empty names separated by '/'")
    return key


def _is_partial(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith(".") and PARTIAL in name


def _months_back(today: date, count: int) -> list[tuple[int, int]]:
    months, year, month = [], today.year, today.month
    for _ in range(count):
        months.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return months


def plan_prune(entries: Iterable[CatalogEntry], today: date, daily: int = 30, monthly: int = 12) -> PrunePlan:
    """Which of one environment's backups retention keeps: the newest `daily`, the newest of each of the last
    `monthly` months (today's month counts as one), and the newest verified one whatever the policy says
    (a backup whose restore test passed is the one to fall back on while newer ones are unproven).
    """
    if daily < 1:
        raise ValueError(f"daily={daily}: keep at least the newest backup (daily >= 1)")
    if monthly < 0:
        raise ValueError(f"monthly={monthly} must be >= 0")
    ordered = sorted(entries, key=lambda e: e.date, reverse=True)
    envs = {e.env for e in ordered}
    if len(envs) > 1:
        raise ValueError(f"plan_prune takes one environment's entries, got {sorted(envs)}")
    if len({e.date for e in ordered}) != len(ordered):
        raise ValueError("two entries for the same day: the catalog holds one per environment and day")
    why: dict[date, list[str]] = {}
    for rank, entry in enumerate(ordered[:daily], start=1):
        why.setdefault(entry.date, []).append(f"daily ({rank} of the newest {daily})")
    for year, month in _months_back(today, monthly):
        newest = next((e for e in ordered if (e.date.year, e.date.month) == (year, month)), None)
        if newest is not None:
            why.setdefault(newest.date, []).append(f"monthly (newest of {year:04d}-{month:02d})")
    newest_verified = next((e for e in ordered if e.verified), None)
    if newest_verified is not None and newest_verified.date not in why:
        why[newest_verified.date] = ["newest verified backup (never deleted, whatever the policy says)"]
    beyond = f"beyond the newest {daily} daily and the newest of each of the last {monthly} months"
    reasons = {e.date: "; ".join(why.get(e.date, [beyond])) for e in ordered}
    return PrunePlan(
        keep=tuple(e for e in ordered if e.date in why),
        delete=tuple(e for e in ordered if e.date not in why),
        reasons=reasons,
    )


class BackupStore(Protocol):
    """Backup files and their catalog, in a folder or S3; see the module docstring for the guarantees."""

    def describe(self) -> str:
        """Where the store is, for messages: a folder or s3://bucket/prefix (+ copy)."""
        ...

    def location(self, key: str) -> str:
        """The path or s3:// URI of `key`."""
        ...

    def put(self, local_path: Path, key: str) -> StoredObject:
        """Store the file under `key` (never overwriting) and check the stored size; the copy too."""
        ...

    def get(self, key: str, local_path: Path, sha256: str | None = None) -> Path:
        """Fetch `key` into `local_path` (whole or not at all), checking `sha256` when given."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove `key` (from both buckets); no error if it is already gone."""
        ...

    def list_objects(self, prefix: str = "") -> list[ListedObject]:
        """Every key under `prefix` (a folder store's temp files included; with a copy bucket, keys in either)."""
        ...

    def put_backup(
        self,
        env: str,
        day: date,
        files: Mapping[str, Path],
        metadata: Mapping[str, Any] | None = None,
        run: str | None = None,
    ) -> CatalogEntry:
        """Store every file of one backup under a new run's keys, then (only then) its catalog entry."""
        ...

    def catalog(self, env: str) -> list[CatalogEntry]:
        """`env`'s entries, oldest first."""
        ...

    def entry(self, env: str, day: date) -> CatalogEntry | None: ...

    def write_entry(self, entry: CatalogEntry) -> None:
        """Write `entry` atomically, after checking that every object it names is stored with its size."""
        ...

    def mark_verified(
        self, entry: CatalogEntry, at: datetime | None = None, metadata: Mapping[str, Any] | None = None
    ) -> CatalogEntry:
        """Record that `entry`'s restore test passed (refused if the entry changed since it was read)."""
        ...

    def orphans(self, min_age: timedelta = ORPHAN_MIN_AGE, now: datetime | None = None) -> list[ListedObject]:
        """Stored objects no catalog entry names (and leftover temp files), older than `min_age`."""
        ...

    def remove_orphans(
        self, min_age: timedelta = ORPHAN_MIN_AGE, now: datetime | None = None, dry_run: bool = False
    ) -> list[ListedObject]:
        """Delete what `orphans` lists (unless `dry_run`); returns it."""
        ...

    def prune(
        self, env: str, daily: int = 30, monthly: int = 12, dry_run: bool = True, today: date | None = None
    ) -> PrunePlan:
        """Apply `plan_prune` to `env`'s catalog: each deleted backup loses its entry first, then its objects."""
        ...


class _CataloguedStore:
    """The catalog, retention and orphan logic, once, over a few storage primitives each store provides."""

    # --- primitives (FolderStore, S3Store) ---
    def describe(self) -> str:
        raise NotImplementedError

    def location(self, key: str) -> str:
        raise NotImplementedError

    def put(self, local_path: Path, key: str) -> StoredObject:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def list_objects(self, prefix: str = "") -> list[ListedObject]:
        raise NotImplementedError

    def _write_small(self, key: str, data: bytes) -> None:
        """Write a small object atomically (replacing it): catalog entries."""
        raise NotImplementedError

    def _read_small(self, key: str) -> bytes | None:
        raise NotImplementedError

    def _check_stored(self, obj: StoredObject) -> str | None:
        """Why `obj` is not stored as recorded (missing, other size), or None when it is."""
        raise NotImplementedError

    # --- shared logic ---
    def put_backup(
        self,
        env: str,
        day: date,
        files: Mapping[str, Path],
        metadata: Mapping[str, Any] | None = None,
        run: str | None = None,
    ) -> CatalogEntry:
        """Store each of `files` ({"dump": path, ...}) under a new run's keys, then write the day's catalog entry.

        If storing an object fails, no entry is written (an existing entry for the day stays as it
        was), the objects this call already stored are deleted if the store can still be reached,
        and the StoreError says what is left behind. If only the entry fails, its objects are kept:
        the entry may be in place (S3: in the bucket but not the copy bucket); if it is not,
        `remove_orphans` removes them later.
        """
        if not files:
            raise StoreError(f"backup of {env} for {day}: no files to store")
        try:
            json.dumps(dict(metadata or {}))
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"backup of {env} for {day} not stored: its metadata must be JSON values (numbers, strings, lists, "
                f"dicts): {exc}"
            ) from None
        run = run or new_run_id()
        stored: dict[str, StoredObject] = {}
        try:
            for name, local in files.items():
                stored[name] = self.put(Path(local), object_key(env, day, run, f"{name}{_suffixes(Path(local))}"))
        except StoreError as exc:
            raise StoreError(
                f"backup of {env} for {day} was not stored: {exc}. No catalog entry was written (an existing "
                f"entry for {day} is untouched); {self._clean_up(stored.values())}"
            ) from None
        entry = CatalogEntry(
            env=env, date=day, objects=stored, created_at=datetime.now(UTC), metadata=dict(metadata or {})
        )
        try:
            self.write_entry(entry)
        except StoreError as exc:
            raise StoreError(
                f"backup of {env} for {day}: every object is stored, but its catalog entry failed: {exc}. The "
                "objects are kept: write the entry again (write_entry), or remove_orphans removes them once old"
            ) from None
        return entry

    def _clean_up(self, objects: Iterable[StoredObject]) -> str:
        left = []
        for obj in objects:
            try:
                self.delete(obj.key)
            except StoreError:
                left.append(obj.key)
        if left:
            return f"objects stored before the failure are orphans until remove_orphans runs: {', '.join(left)}"
        return "nothing it stored is left behind"

    def catalog(self, env: str) -> list[CatalogEntry]:
        prefix = f"{CATALOG}/{_check_env(env)}/"
        entries = []
        for listed in self.list_objects(prefix):
            name = listed.key.removeprefix(prefix)
            if "/" in name or not name.endswith(".json") or _is_partial(listed.key):
                continue
            data = self._read_small(listed.key)
            if data is not None:  # deleted since listed
                entries.append(CatalogEntry.from_json(data, self.location(listed.key)))
        return sorted(entries, key=lambda e: e.date)

    def entry(self, env: str, day: date) -> CatalogEntry | None:
        key = catalog_key(env, day)
        data = self._read_small(key)
        return CatalogEntry.from_json(data, self.location(key)) if data is not None else None

    def write_entry(self, entry: CatalogEntry) -> None:
        problems = [f"{name}: {why}" for name, obj in entry.objects.items() if (why := self._check_stored(obj))]
        if problems:
            raise StoreError(
                f"catalog entry {entry.key} not written: not every object it names is stored ({'; '.join(problems)}); "
                "put every object first"
            )
        try:
            data = entry.to_json().encode()
        except (TypeError, ValueError) as exc:
            raise StoreError(
                f"catalog entry {entry.key} not written: its metadata must be JSON values "
                f"(numbers, strings, lists, dicts): {exc}"
            ) from None
        self._write_small(entry.key, data)

    def mark_verified(
        self, entry: CatalogEntry, at: datetime | None = None, metadata: Mapping[str, Any] | None = None
    ) -> CatalogEntry:
        current = self.entry(entry.env, entry.date)
        if current is None:
            raise StoreError(f"no catalog entry {entry.key} (pruned since the restore test?): nothing marked verified")
        if current.objects != entry.objects:
            raise StoreError(
                f"catalog entry {entry.key} names other objects than the backup that was tested (a newer backup "
                "of that day?): not marked verified; test the current one"
            )
        verified = replace(
            current, verified_at=at or datetime.now(UTC), metadata={**current.metadata, **(metadata or {})}
        )
        self.write_entry(verified)
        return verified

    def orphans(self, min_age: timedelta = ORPHAN_MIN_AGE, now: datetime | None = None) -> list[ListedObject]:
        cutoff = (now or datetime.now(UTC)) - min_age
        named: set[str] = set()
        found = self.list_objects()
        for listed in found:
            parts = listed.key.split("/")
            if parts[0] == CATALOG and len(parts) == 3 and not _is_partial(listed.key):
                data = self._read_small(listed.key)
                if data is not None:
                    named.update(
                        o.key for o in CatalogEntry.from_json(data, self.location(listed.key)).objects.values()
                    )
        return [
            o
            for o in found
            if o.modified <= cutoff and (_is_partial(o.key) or (o.key.split("/")[0] != CATALOG and o.key not in named))
        ]

    def remove_orphans(
        self, min_age: timedelta = ORPHAN_MIN_AGE, now: datetime | None = None, dry_run: bool = False
    ) -> list[ListedObject]:
        found = self.orphans(min_age, now)
        if not dry_run:
            for orphan in found:
                self.delete(orphan.key)
        return found

    def prune(
        self, env: str, daily: int = 30, monthly: int = 12, dry_run: bool = True, today: date | None = None
    ) -> PrunePlan:
        plan = plan_prune(self.catalog(env), today or datetime.now(UTC).date(), daily, monthly)
        if dry_run:
            return plan
        kept = {obj.key for e in plan.keep for obj in e.objects.values()}
        for entry in plan.delete:
            # Entry first: a crash after it leaves orphans, never an entry that names deleted objects.
            self._delete_entry(entry)
            for obj in entry.objects.values():
                if obj.key not in kept:
                    self.delete(obj.key)
        return replace(plan, executed=True)

    def _delete_entry(self, entry: CatalogEntry) -> None:
        self.delete(entry.key)


def _suffixes(path: Path) -> str:
    return "".join(s for s in path.suffixes if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", s))


def _copy_hashing(source: Path, target: Path) -> tuple[int, str]:
    """Copy `source` into a new file `target` (mode 600), fsynced; its size and sha256."""
    digest, size = hashlib.sha256(), 0
    with open(source, "rb") as src, open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return size, digest.hexdigest()


def _sha256_of(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _partial_beside(path: Path) -> Path:
    return path.parent / f".{path.name}{PARTIAL}{uuid.uuid4().hex[:8]}"


class FolderStore(_CataloguedStore):
    """Backups as files under `folder` (mode 600), each written to a temp name, fsynced and renamed."""

    def __init__(self, folder: Path | str) -> None:
        self.root = Path(folder).absolute()

    def describe(self) -> str:
        return f"folder {self.root}"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def location(self, key: str) -> str:
        return str(self._path(key))

    def put(self, local_path: Path, key: str) -> StoredObject:
        target = self._path(key)
        if key.split("/")[0] == CATALOG:
            raise StoreError(f"{CATALOG}/ is kept for catalog entries: store {local_path} under another key")
        if not Path(local_path).is_file():
            raise StoreError(f"cannot store {local_path} as {key}: the file does not exist; nothing was changed")
        if target.exists():
            raise StoreError(
                f"{target} already exists: stored backups are never overwritten (use a new key, e.g. a new run)"
            )
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = _partial_beside(target)
            try:
                size, sha256 = _copy_hashing(Path(local_path), partial)
                os.replace(partial, target)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            fsync_dir(target.parent)
        except OSError as exc:
            raise StoreError(
                f"storing {local_path} as {target} failed: {exc.strerror or exc}; nothing was changed"
            ) from None
        stored = target.stat().st_size
        if stored != size:
            target.unlink(missing_ok=True)
            raise StoreError(f"{target} holds {stored} bytes after writing {size}: removed, nothing was changed")
        return StoredObject(key=key, location=str(target), bytes=size, sha256=sha256)

    def get(self, key: str, local_path: Path, sha256: str | None = None) -> Path:
        source, local_path = self._path(key), Path(local_path)
        if not source.is_file():
            raise StoreError(f"no object {key} in {self.describe()} ({source} does not exist)")
        local_path.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial_beside(local_path)
        try:
            _size, actual = _copy_hashing(source, partial)
            if sha256 is not None and actual != sha256:
                raise StoreError(f"{source} is corrupted: sha256 {actual} differs from the recorded {sha256}")
            os.replace(partial, local_path)
        except OSError as exc:
            raise StoreError(f"fetching {source} into {local_path} failed: {exc.strerror or exc}") from None
        finally:
            partial.unlink(missing_ok=True)
        return local_path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"deleting {path} failed: {exc.strerror or exc}") from None
        # Tidy the folders the key made, never the store's own folder; one that is in use stays.
        folder = path.parent
        try:
            while folder != self.root and self.root in folder.parents and folder.is_dir():
                folder.rmdir()  # only when empty: OSError otherwise
                folder = folder.parent
        except OSError:
            pass

    def list_objects(self, prefix: str = "") -> list[ListedObject]:
        # As S3 does: `prefix` is a string prefix of keys, not necessarily a whole folder name.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        found = []
        for folder, _dirs, names in os.walk(base):
            for name in names:
                path = Path(folder) / name
                try:
                    info = path.stat()
                except FileNotFoundError:
                    continue
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(ListedObject(key, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC)))
        return sorted(found, key=lambda o: o.key)

    def _write_small(self, key: str, data: bytes) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = _partial_beside(target)
            try:
                with open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(partial, target)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            fsync_dir(target.parent)
        except OSError as exc:
            raise StoreError(f"writing {target} failed: {exc.strerror or exc}; the previous one is unchanged") from None

    def _read_small(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"reading {self._path(key)} failed: {exc.strerror or exc}") from None

    def _check_stored(self, obj: StoredObject) -> str | None:
        path = self._path(obj.key)
        if not path.is_file():
            return f"{path} does not exist"
        size = path.stat().st_size
        return None if size == obj.bytes else f"{path} holds {size} bytes, not {obj.bytes}"


class S3Store(_CataloguedStore):
    """Backups as objects in `bucket` under `prefix`, each copied to `copy_bucket` (in `copy_region`) when set.

    Uploads go through boto3's transfer manager (multipart above `multipart_threshold`; a
    failed multipart upload is aborted, so the key keeps what it held). Every call retries in
    botocore's standard mode up to `max_attempts`, then fails with a StoreError naming the
    endpoint, the bucket and what was (not) changed. The sha256 is kept as object metadata.
    """

    def __init__(
        self,
        bucket: str,
        region: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        copy_bucket: str | None = None,
        copy_region: str | None = None,
        max_attempts: int = 5,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        connect_timeout: float = 10,
    ) -> None:
        self.bucket, self.region, self.endpoint_url = bucket, region, endpoint_url
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.copy_bucket, self.copy_region = copy_bucket, (copy_region or region) if copy_bucket else None
        self.max_attempts = max_attempts
        # `total_max_attempts` counts the first attempt too (botocore's `max_attempts` counts only retries).
        retries = {"mode": "standard", "total_max_attempts": max_attempts}
        config = Config(retries=retries, connect_timeout=connect_timeout, read_timeout=60)
        session = boto3.session.Session(region_name=region)  # one session: its clients share loaded models
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.copy_client = (
            session.client("s3", region_name=self.copy_region, endpoint_url=endpoint_url, config=config)
            if copy_bucket
            else None
        )
        self.transfer = TransferConfig(multipart_threshold=multipart_threshold, multipart_chunksize=multipart_threshold)

    def describe(self) -> str:
        copy = f" (copied to s3://{self.copy_bucket} in {self.copy_region})" if self.copy_bucket else ""
        return f"s3://{self.bucket}/{self.prefix} in {self.region}{copy}"

    def _full(self, key: str) -> str:
        return self.prefix + _check_key(key)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def _endpoint(self) -> str:
        return self.endpoint_url or f"the AWS S3 endpoint of {self.region}"

    def _call(self, what: str, bucket: str, changed: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(...)`, its failures turned into one StoreError naming the endpoint, bucket and state."""
        try:
            return fn(*args, **kwargs)
        except NoCredentialsError:
            raise StoreError(
                f"S3 {what} in bucket {bucket}: no AWS credentials found (environment, AWS_PROFILE or an instance/"
                f"task role); {changed}"
            ) from None
        except ClientError as exc:
            error = exc.response.get("Error", {})
            cause = " ".join(str(part) for part in (error.get("Code"), error.get("Message")) if part)
            raise StoreError(
                f"S3 {what} in bucket {bucket} at {self._endpoint()} refused: {cause}; {changed}"
            ) from None
        except (BotoCoreConnectionError, HTTPClientError, RetriesExceededError) as exc:
            raise StoreError(
                f"S3 {what} in bucket {bucket} at {self._endpoint()} failed after up to {self.max_attempts} attempts: "
                f"{exc}; {changed}"
            ) from None
        except (BotoCoreError, S3UploadFailedError) as exc:
            raise StoreError(f"S3 {what} in bucket {bucket} at {self._endpoint()} failed: {exc}; {changed}") from None

    def _head(self, client: Any, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            return client.head_object(Bucket=bucket, Key=self._full(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                return None
            raise

    def _clients(self) -> list[tuple[Any, str]]:
        pairs = [(self.client, self.bucket)]
        if self.copy_client is not None and self.copy_bucket:
            pairs.append((self.copy_client, self.copy_bucket))
        return pairs

    def put(self, local_path: Path, key: str) -> StoredObject:
        local_path = Path(local_path)
        if key.split("/")[0] == CATALOG:
            raise StoreError(f"{CATALOG}/ is kept for catalog entries: store {local_path} under another key")
        if not local_path.is_file():
            raise StoreError(f"cannot store {local_path} as {key}: the file does not exist; nothing was changed")
        full = self._full(key)
        try:
            size, sha256 = _sha256_of(local_path)
        except OSError as exc:
            raise StoreError(
                f"cannot store {local_path} as {key}: {exc.strerror or exc}; nothing was changed"
            ) from None
        untouched = "nothing was changed"
        if self._call(f"checking {full}", self.bucket, untouched, self._head, self.client, self.bucket, key):
            raise StoreError(
                f"{self.location(key)} already exists: stored backups are never overwritten (use a new key, e.g. a new run)"
            )
        extra = {"Metadata": {"sha256": sha256}}
        self._call(
            f"upload of {local_path} to {full}", self.bucket, f"{untouched} (a failed upload stores nothing)",
            self.client.upload_file, str(local_path), self.bucket, full, ExtraArgs=extra, Config=self.transfer,
        )  # fmt: skip
        copy_location = None
        try:
            self._verify(self.client, self.bucket, key, size, sha256)
            if self.copy_client is not None and self.copy_bucket:
                self._call(
                    f"copy of {full} to bucket {self.copy_bucket} ({self.copy_region})", self.copy_bucket,
                    "the copy was not made", self.copy_client.copy, {"Bucket": self.bucket, "Key": full},
                    self.copy_bucket, full, SourceClient=self.client, Config=self.transfer,
                )  # fmt: skip
                self._verify(self.copy_client, self.copy_bucket, key, size, sha256)
                copy_location = f"s3://{self.copy_bucket}/{full}"
        except StoreError as exc:
            raise StoreError(f"{exc}; {self._undo_put(key)}") from None
        return StoredObject(
            key=key, location=self.location(key), bytes=size, sha256=sha256, copy_location=copy_location
        )

    def _undo_put(self, key: str) -> str:
        try:
            self.delete(key)
        except StoreError:
            return f"{self.location(key)} (and its copy, if made) could not be removed: an orphan until remove_orphans"
        return f"{self.location(key)} was removed again: nothing is left behind"

    def _verify(self, client: Any, bucket: str, key: str, size: int, sha256: str) -> None:
        head = self._call(f"checking {self._full(key)}", bucket, "stored, unchecked", self._head, client, bucket, key)
        where = f"s3://{bucket}/{self._full(key)}"
        if head is None:
            raise StoreError(f"{where} is missing right after its upload")
        if int(head["ContentLength"]) != size:
            raise StoreError(f"{where} holds {head['ContentLength']} bytes, the file {size}")
        if head.get("Metadata", {}).get("sha256") != sha256:
            raise StoreError(f"{where} does not carry the file's sha256 {sha256} (metadata lost in the copy?)")

    def get(self, key: str, local_path: Path, sha256: str | None = None) -> Path:
        local_path = Path(local_path)
        full = self._full(key)
        if not self.exists(key):
            raise StoreError(f"no object {key} in {self.describe()}")
        local_path.parent.mkdir(parents=True, exist_ok=True)
        partial = _partial_beside(local_path)
        try:
            self._call(
                f"download of {full}", self.bucket, "nothing was changed", self.client.download_file,
                self.bucket, full, str(partial), Config=self.transfer,
            )  # fmt: skip
            if sha256 is not None:
                _size, actual = _sha256_of(partial)
                if actual != sha256:
                    raise StoreError(
                        f"{self.location(key)} is corrupted: sha256 {actual} differs from the recorded {sha256}"
                    )
            os.replace(partial, local_path)
        finally:
            partial.unlink(missing_ok=True)
        return local_path

    def exists(self, key: str) -> bool:
        head = self._call(
            f"checking {self._full(key)}", self.bucket, "nothing was changed", self._head, self.client, self.bucket, key
        )
        return head is not None

    def delete(self, key: str) -> None:
        full = self._full(key)
        for client, bucket in self._clients():
            self._call(
                f"delete of {full}", bucket, "not deleted (deleting again is safe)", client.delete_object,
                Bucket=bucket, Key=full,
            )  # fmt: skip

    def _list(self, client: Any, bucket: str, prefix: str) -> list[ListedObject]:
        found = []
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=self.prefix + prefix)
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"].removeprefix(self.prefix)
                found.append(ListedObject(key, int(item["Size"]), item["LastModified"].astimezone(UTC)))
        return found

    def list_objects(self, prefix: str = "") -> list[ListedObject]:
        merged: dict[str, ListedObject] = {}
        for client, bucket in self._clients():
            what = f"listing {self.prefix + prefix}"
            for obj in self._call(what, bucket, "nothing was changed", self._list, client, bucket, prefix):
                merged.setdefault(obj.key, obj)
        return sorted(merged.values(), key=lambda o: o.key)

    def _delete_entry(self, entry: CatalogEntry) -> None:
        # The copy bucket's entry first: an entry in the copy bucket always has one in the primary,
        # whose objects `orphans` (which reads the primary's entries) therefore never deletes.
        full = self._full(entry.key)
        for client, bucket in reversed(self._clients()):
            self._call(
                f"delete of {full}", bucket, "not deleted (deleting again is safe)", client.delete_object,
                Bucket=bucket, Key=full,
            )  # fmt: skip

    def _write_small(self, key: str, data: bytes) -> None:
        full = self._full(key)
        for n, (client, bucket) in enumerate(self._clients()):
            changed = (
                "not written (an entry already there is unchanged)"
                if n == 0
                else f"written to {self.bucket} but not to the copy bucket: write it again"
            )
            self._call(
                f"writing {full}", bucket, changed, client.put_object,
                Bucket=bucket, Key=full, Body=data, ContentType="application/json",
            )  # fmt: skip

    def _read_small(self, key: str) -> bytes | None:
        full = self._full(key)

        def read() -> bytes | None:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                    return None
                raise

        return self._call(f"reading {full}", self.bucket, "nothing was changed", read)

    def _check_stored(self, obj: StoredObject) -> str | None:
        clients = self._clients() if obj.copy_location else self._clients()[:1]
        for client, bucket in clients:
            head = self._call(
                f"checking {self._full(obj.key)}", bucket, "nothing was changed", self._head, client, bucket, obj.key
            )
            where = f"s3://{bucket}/{self._full(obj.key)}"
            if head is None:
                return f"{where} does not exist"
            if int(head["ContentLength"]) != obj.bytes:
                return f"{where} holds {head['ContentLength']} bytes, not {obj.bytes}"
        return None


class BackupStoreResource(dg.ConfigurableResource):
    """The backup store: a local `folder`, or S3 (`bucket` in `region`, optionally copied to `copy_bucket`).

    No credential fields: S3 clients use the AWS default chain. `store()` hands out the plain
    `BackupStore` the backup code works with.
    """

    folder: str | None = Field(default=None, description="local store: this folder (created when first written)")
    bucket: str | None = Field(default=None, description="S3 store: this bucket")
    prefix: str = Field(default="", description="S3: keys start with this prefix")
    region: str | None = Field(default=None, description="S3: the bucket's region, e.g. eu-central-1")
    endpoint_url: str | None = Field(default=None, description="S3: another endpoint (tests: moto)")
    copy_bucket: str | None = Field(default=None, description="S3: a second copy of every object in this bucket")
    copy_region: str | None = Field(default=None, description="S3: the copy bucket's region (default: region)")
    max_attempts: int = Field(
        default=5, ge=1, description="S3: attempts per call, the first included (botocore standard retry mode)"
    )

    def store(self) -> BackupStore:
        """The `FolderStore` or `S3Store` these fields describe; StoreError if they describe neither or both."""
        if bool(self.folder) == bool(self.bucket):
            raise StoreError(
                "backup_store needs exactly one of `folder` (a local store) or `bucket` (S3), "
                f"got {'both' if self.folder else 'neither'}"
            )
        if self.folder:
            return FolderStore(Path(self.folder))
        if not self.region:
            raise StoreError(f"backup_store: bucket {self.bucket} needs its `region`")
        if self.copy_region and not self.copy_bucket:
            raise StoreError("backup_store: `copy_region` is set but `copy_bucket` is not: name the copy bucket")
        if self.copy_bucket == self.bucket and (self.copy_region or self.region) == self.region:
            raise StoreError(f"backup_store: the copy bucket is the bucket itself ({self.bucket}): name another one")
        return S3Store(
            bucket=str(self.bucket), region=self.region, prefix=self.prefix, endpoint_url=self.endpoint_url,
            copy_bucket=self.copy_bucket, copy_region=self.copy_region, max_attempts=self.max_attempts,
        )  # fmt: skip
