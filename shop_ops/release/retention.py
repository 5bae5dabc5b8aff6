"""Registry housekeeping: which image manifests to keep (serving, the ledger's recent releases, the last builds), the rest deleted.

Plain functions over the registry's API (`RegistryClient`; `EcrImages` on aws), the release ledger and the
Docker API; `registry_retention`
(shop_ops/assets/retention.py) wires them. Rules:

- Everything is decided per manifest digest, with every reason. A digest kept for any reason
  keeps all its tags (a release tag of a kept digest is never deleted); deleting is by digest
  (DELETE /v2/<repository>/manifests/<digest>), which takes its tags with it.
- Kept: what serves each environment now (the images its containers run, both slots, and the
  ledger's serving release), each environment's rollback target, the last `keep_releases`
  releases of the ledger's history (any environment, any outcome), a release tag newer than every
  release in the ledger (tagged, its deploy not started yet), the last `keep_builds` builds per
  repository (`<version>-<sha>` tags, ordered by the image's creation time), and any digest with a
  tag that is neither a build nor a release tag (not ours to judge).
- The plan is made from complete inputs or not at all: a ledger or a serving state that cannot
  be read raises `RetentionError` before anything is deleted. Just before deleting, a repository's
  tags are read again; a digest that got a new tag since the plan is kept.
- Untagged manifests are invisible to the registry API's listings and are never deleted here;
  garbage collection runs without --delete-untagged, so their layers stay too. ECR collects its
  own garbage (no read-only window there).
"""

from __future__ import annotations

import re
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from docker.errors import DockerException
from requests.exceptions import RequestException

from shop_ops.release.flow import DeployRefused
from shop_ops.release.registry_watch import release_version
from shop_ops.resources.containers import ContainerError, DockerEngine, LocalImage
from shop_ops.resources.ledger import LedgerError, ReleaseLedger
from shop_ops.resources.registry import RegistryError
from shop_ops.services.processes import ServiceError
from shop_ops.services.registry import GarbageCollection, RegistryServer

BUILD_TAG = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)-[0-9A-Za-z][0-9A-Za-z.]*$")
DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")
CREATED_LABEL = "org.opencontainers.image.created"
# What reading a target's containers or the engine's store raises when they cannot be read.
_UNREADABLE = (DeployRefused, ContainerError, DockerException, RequestException, RuntimeError, OSError)
NOT_KEPT = "not serving, not a recent release, not one of the last builds"


class ImageRegistry(Protocol):
    """What housekeeping reads and deletes through: `RegistryClient` (the registry's HTTP API) or `EcrImages`."""

    address: str

    def tag_digests(self, repository: str) -> dict[str, str]: ...
    def image_config(self, repository: str, reference: str) -> dict: ...
    def manifest_digest(self, repository: str, reference: str) -> str | None: ...
    def delete_manifest(self, repository: str, digest: str) -> bool: ...


class RetentionError(RuntimeError):
    """The plan cannot be made (ledger, serving state or registry unreadable); nothing was deleted."""


@dataclass(frozen=True)
class StoredImage:
    """One manifest in a repository, with every tag on it and when its image was built (None: unknown)."""

    repository: str
    digest: str
    tags: tuple[str, ...]
    created: datetime | None


@dataclass(frozen=True)
class Decision(StoredImage):
    """A stored image and what housekeeping does with it, with every reason."""

    keep: bool
    reasons: tuple[str, ...]

    def row(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "digest": self.digest,
            "tags": ", ".join(self.tags),
            "created": self.created.isoformat(timespec="seconds") if self.created else "",
            "decision": "keep" if self.keep else "delete",
            "reasons": "; ".join(self.reasons),
        }


@dataclass
class Keeps:
    """digest -> why it is kept, from the ledger and the serving state; `versions`: every version in the ledger."""

    reasons: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    versions: set[str] = field(default_factory=set)

    def add(self, digest: str, reason: str) -> None:
        if reason not in self.reasons[digest]:
            self.reasons[digest].append(reason)


# ------------------------------------------------------------------ reading the inputs
def _created(config: Mapping[str, Any]) -> datetime | None:
    labels = (config.get("config") or {}).get("Labels") or {}
    for value in (labels.get(CREATED_LABEL), config.get("created")):
        if not value:
            continue
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def read_registry(client: ImageRegistry, repositories: Sequence[str]) -> list[StoredImage]:
    """Every tagged manifest of `repositories`, tags grouped by digest, with its image's creation time."""
    images = []
    try:
        for repository in repositories:
            by_digest: dict[str, list[str]] = defaultdict(list)
            for tag, digest in client.tag_digests(repository).items():
                by_digest[digest].append(tag)
            for digest, tags in sorted(by_digest.items()):
                try:
                    created = _created(client.image_config(repository, digest))
                except (RegistryError, ValueError):  # an index (no config blob) or an unreadable config
                    created = None
                images.append(StoredImage(repository, digest, tuple(sorted(tags)), created))
    except RegistryError as exc:
        raise RetentionError(f"the registry cannot be listed: {exc}; nothing was deleted") from None
    return images


def ledger_keeps(ledger: ReleaseLedger, environments: Iterable[str], keep_releases: int, keeps: Keeps) -> None:
    """Add the ledger's serving releases, rollback targets and last `keep_releases` releases to `keeps`."""
    try:
        history = ledger.history()
        current = {env: (ledger.serving(env), ledger.previous_verified(env)) for env in environments}
    except (LedgerError, OSError) as exc:  # no plan: a guess here would delete what serves
        raise RetentionError(
            f"the release ledger cannot be read ({type(exc).__name__}: {exc}); nothing was deleted"
        ) from None
    for environment, (serving, rollback) in current.items():
        for entry, why in ((serving, "serves"), (rollback, "rollback target")):
            if entry is not None:
                for digest in (entry.backend_digest, entry.frontend_digest):
                    keeps.add(digest, f"{why} on {environment} ({entry.version}, ledger)")
    seen: list[tuple[str, str, str]] = []
    for row in reversed(history):  # newest first
        keeps.versions.add(str(row["version"]))
        release = (str(row["version"]), str(row["backend_digest"]), str(row["frontend_digest"]))
        if release not in seen:
            seen.append(release)
    for version, backend, frontend in seen[:keep_releases]:
        for digest in (backend, frontend):
            keeps.add(digest, f"release {version}: one of the ledger's last {keep_releases}")


def serving_keeps(
    running: Mapping[str, Sequence[str]], client: ImageRegistry, repositories: Sequence[str], keeps: Keeps
) -> None:
    """Add the digests of the images each environment's containers run (environment -> image references).

    A reference pinned by digest counts as it is; a tag of one of the shop's repositories in this
    registry is resolved to its digest now; other references (a local build) are not in the registry.
    """
    for environment, refs in running.items():
        for ref in refs:
            pinned = DIGEST.search(ref)
            if pinned:
                keeps.add(pinned.group(1), f"runs on {environment}")
                continue
            name, _, tag = ref.rpartition(":")
            address, _, repository = name.partition("/")
            if address != client.address or repository not in repositories or not tag:
                continue
            try:
                digest = client.manifest_digest(repository, tag)
            except RegistryError as exc:
                raise RetentionError(
                    f"cannot resolve {ref} (runs on {environment}): {exc}; nothing was deleted"
                ) from None
            if digest:
                keeps.add(digest, f"runs on {environment} ({tag})")


# ------------------------------------------------------------------ the plan
def _pending(tags: Sequence[str], versions: set[str]) -> str | None:
    """A release tag newer than every version the ledger has seen: its release has not started yet."""
    known = [v for v in (release_version(x) for x in versions) if v is not None]
    for tag in tags:
        version = release_version(tag)
        if version is not None and tag not in versions and (not known or version > max(known)):
            return tag
    return None


def plan(images: Sequence[StoredImage], keeps: Keeps, keep_builds: int) -> list[Decision]:
    """Keep or delete each stored manifest, with every reason (see the module's rules)."""
    reasons: dict[tuple[str, str], list[str]] = {
        (i.repository, i.digest): list(keeps.reasons.get(i.digest, ())) for i in images
    }
    builds: dict[str, list[StoredImage]] = defaultdict(list)
    for image in images:
        why = reasons[(image.repository, image.digest)]
        unmanaged = [t for t in image.tags if release_version(t) is None and not BUILD_TAG.match(t)]
        if unmanaged:
            why.append(f"tag {', '.join(unmanaged)} is neither a build nor a release tag (not managed here)")
        pending = _pending(image.tags, keeps.versions)
        if pending:
            why.append(f"release {pending} is newer than the ledger's (its deploy has not started)")
        if any(BUILD_TAG.match(t) for t in image.tags):
            if image.created is None:
                why.append("build date unknown (no created time in its image config)")
            else:
                builds[image.repository].append(image)
    for repository, found in builds.items():
        newest = sorted(found, key=lambda i: (i.created, i.digest), reverse=True)[:keep_builds]
        for image in newest:
            reasons[(repository, image.digest)].append(f"one of the last {keep_builds} builds of {repository}")
    return [
        Decision(
            **vars(i),
            keep=bool(reasons[(i.repository, i.digest)]),
            reasons=tuple(reasons[(i.repository, i.digest)] or [NOT_KEPT]),
        )
        for i in sorted(images, key=lambda i: (i.repository, i.created or datetime.min.replace(tzinfo=UTC), i.digest))
    ]


# ------------------------------------------------------------------ carrying it out
@dataclass
class Deletion:
    """What deleting the planned manifests did: deleted, skipped (changed since the plan) and failed, each with why."""

    deleted: list[Decision] = field(default_factory=list)
    skipped: list[tuple[Decision, str]] = field(default_factory=list)
    failed: list[tuple[Decision, str]] = field(default_factory=list)


def delete_manifests(client: ImageRegistry, decisions: Sequence[Decision]) -> Deletion:
    """Delete every `delete` decision's manifest by digest, after reading its repository's tags again."""
    result = Deletion()
    by_repository: dict[str, list[Decision]] = defaultdict(list)
    for decision in decisions:
        if not decision.keep:
            by_repository[decision.repository].append(decision)
    for repository, doomed in by_repository.items():
        try:
            now = client.tag_digests(repository)
        except RegistryError as exc:
            result.failed.extend((d, f"tags not readable again: {exc}") for d in doomed)
            continue
        for decision in doomed:
            tags_now = tuple(sorted(tag for tag, digest in now.items() if digest == decision.digest))
            added = sorted(set(tags_now) - set(decision.tags))
            if added:
                result.skipped.append((decision, f"tagged {', '.join(added)} since the plan: kept"))
                continue
            try:
                client.delete_manifest(repository, decision.digest)
            except RegistryError as exc:
                result.failed.append((decision, str(exc)))
                continue
            result.deleted.append(decision)
    return result


@dataclass(frozen=True)
class Pruned:
    """One local image reference of the shop's repositories: removed or kept, and why."""

    reference: str
    image_id: str
    removed: bool
    reason: str


def prune_local_images(
    engine: DockerEngine,
    registry_address: str,
    decisions: Sequence[Decision],
    deleted: Sequence[Decision],
    *,
    dry_run: bool = False,
    min_age: timedelta = timedelta(hours=1),
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Pruned]:
    """Remove the engine's names for images of the shop's repositories in this registry that are not kept.

    A name goes when its digest or tag was deleted now, or when neither is in the registry any more
    and the image is older than `min_age` (deleted before; a build being pushed is younger). Names
    of an image any container uses (running or stopped) stay, and so do names of kept manifests.
    Tag names are removed one by one; digest names only when every name of the image goes (removing
    by digest may take the image). The engine frees an image's layers once no name is left.
    """
    repositories = {d.repository for d in decisions}
    kept_digests = {(d.repository, d.digest) for d in decisions if d.keep}
    kept_tags = {(d.repository, t) for d in decisions if d.keep for t in d.tags}
    known_tags = {(d.repository, t) for d in decisions for t in d.tags}
    known_digests = {(d.repository, d.digest) for d in decisions}
    deleted_digests = {(d.repository, d.digest) for d in deleted}
    deleted_tags = {(d.repository, t) for d in deleted for t in d.tags}
    in_use = engine.image_ids_in_use()
    results = []
    for image in engine.list_images():
        refs = _shop_refs(image, registry_address, repositories)
        if not refs:
            continue
        old = image.created is not None and now() - image.created > min_age
        verdicts: list[tuple[str, str | None]] = []  # (full reference, why it goes; None: it stays)
        for full, repo, ref in refs:
            if (repo, ref) in kept_digests or (repo, ref) in kept_tags:
                verdicts.append((full, None))
            elif (repo, ref) in deleted_digests or (repo, ref) in deleted_tags:
                verdicts.append((full, "its manifest was deleted from the registry"))
            elif (repo, ref) not in known_tags and (repo, ref) not in known_digests and old:
                verdicts.append((full, f"not in the registry and older than {min_age}"))
            else:
                verdicts.append((full, None))
        whole = all(why for _, why in verdicts)
        for full, why in verdicts:
            if image.image_id in in_use:
                results.append(Pruned(full, image.image_id, False, "a container uses it"))
            elif why is None:
                results.append(Pruned(full, image.image_id, False, "kept, in the registry and not deleted, or young"))
            elif "@" in full and not whole:
                # Removing by digest can take the whole image with it: only when every name of it goes.
                results.append(Pruned(full, image.image_id, False, f"{why}, but other names of the image stay"))
            elif dry_run:
                results.append(Pruned(full, image.image_id, False, f"dry run, would remove: {why}"))
            elif engine.remove_image(full) or not engine.image_exists(full):
                results.append(Pruned(full, image.image_id, True, why))
            else:
                results.append(Pruned(full, image.image_id, False, f"{why}; the engine refused (in use)"))
    return results


def _shop_refs(image: LocalImage, address: str, repositories: set[str]) -> list[tuple[str, str, str]]:
    """(full reference, repository, tag or digest) for the image's names of `repositories` at `address`."""
    refs = []
    for full in (*image.tags, *image.digests):
        name, sep, ref = full.rpartition("@") if "@" in full else full.rpartition(":")
        host, _, repository = name.partition("/")
        if sep and host == address and repository in repositories:
            refs.append((full, repository, ref))
    return refs


# ------------------------------------------------------------------ the whole job
@dataclass(frozen=True)
class RetentionDeps:
    """What registry_retention works on; each callable is asked once (its failure stops the plan)."""

    client: ImageRegistry
    repositories: Sequence[str]
    environments: Sequence[str]
    ledger: Callable[[], ReleaseLedger]
    running_images: Callable[[str], Sequence[str]]
    server: Callable[[], RegistryServer | None]  # None: a hosted registry that collects its own garbage (ECR)
    engine: Callable[[], DockerEngine] | None  # None: no local image store to prune
    log: Callable[[str], None] = print


@dataclass
class RetentionReport:
    decisions: list[Decision]
    dry_run: bool
    deletion: Deletion = field(default_factory=Deletion)
    collection: GarbageCollection | None = None
    collection_note: str = ""
    pruned: list[Pruned] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        return sum(d.keep for d in self.decisions)

    def metadata(self) -> dict[str, Any]:
        """Counts, bytes and the decision table (dicts of plain values; the op turns them into Dagster metadata)."""
        gc = self.collection
        return {
            "dry_run": self.dry_run,
            "kept": self.kept,
            "to_delete": sum(not d.keep for d in self.decisions),
            "deleted": len(self.deletion.deleted),
            "skipped": len(self.deletion.skipped),
            "failed": len(self.deletion.failed),
            "bytes_freed": gc.bytes_freed if gc else 0,
            "storage_bytes_before": gc.bytes_before if gc else None,
            "storage_bytes_after": gc.bytes_after if gc else None,
            "garbage_collection": self.collection_note,
            "local_names_removed": sum(p.removed for p in self.pruned),
            "decisions": [d.row() for d in self.decisions],
            "local_images": [p.__dict__ for p in self.pruned],
            "errors": self.errors,
        }


def _gc_server(deps: RetentionDeps) -> RegistryServer | None:
    """The local registry to restart read-only, checked before anything is deleted."""
    try:
        server = deps.server()
    except ServiceError as exc:
        raise RetentionError(f"garbage collection is not possible: {exc}; nothing was deleted") from None
    if server is None:
        return None
    if shutil.which("docker-registry") is None or not server.running():
        raise RetentionError(
            f"garbage collection restarts the registry of {server.datadir}, which this process cannot do (no "
            "docker-registry binary, or the registry's process is not visible: a run in a container under "
            "DockerRunLauncher); run registry_retention where the registry runs (dagster dev of `shop-ops local up`) "
            "or with collect_garbage: false; nothing was deleted"
        )
    return server


def housekeep(
    deps: RetentionDeps,
    *,
    keep_releases: int,
    keep_builds: int,
    dry_run: bool = False,
    collect_garbage: bool = True,
    prune_local: bool = True,
) -> RetentionReport:
    """Plan from complete inputs, delete by digest, collect garbage read-only, prune the local image store."""
    server = _gc_server(deps) if collect_garbage and not dry_run else None
    keeps = Keeps()
    try:
        ledger = deps.ledger()
    except (LedgerError, OSError) as exc:
        raise RetentionError(f"the release ledger cannot be opened ({exc}); nothing was deleted") from None
    ledger_keeps(ledger, deps.environments, keep_releases, keeps)
    running = {}
    for environment in deps.environments:
        try:
            running[environment] = list(deps.running_images(environment))
        except _UNREADABLE as exc:
            raise RetentionError(f"what runs on {environment} cannot be read ({exc}); nothing was deleted") from None
    serving_keeps(running, deps.client, deps.repositories, keeps)
    report = RetentionReport(plan(read_registry(deps.client, deps.repositories), keeps, keep_builds), dry_run)
    deps.log(f"{report.kept} manifests kept, {len(report.decisions) - report.kept} to delete")
    if not dry_run:
        report.deletion = delete_manifests(deps.client, report.decisions)
        report.errors += [f"{d.repository}@{d.digest}: {why}" for d, why in report.deletion.failed]
        deps.log(f"deleted {len(report.deletion.deleted)} manifests")
    if server is None:
        report.collection_note = "dry run" if dry_run else "not asked" if not collect_garbage else "the registry's own"
    elif not report.deletion.deleted:
        report.collection_note = "nothing deleted: not run"
    else:
        try:
            with server.maintenance():
                deps.log("the registry is read-only: collecting garbage")
                report.collection = server.garbage_collect()
            report.collection_note = (
                f"read-only for {report.collection.seconds} s, {report.collection.blobs_deleted} blobs"
            )
        except ServiceError as exc:
            report.errors.append(f"garbage collection: {exc}")
            report.collection_note = "failed"
    if prune_local and deps.engine is not None:
        try:
            report.pruned = prune_local_images(
                deps.engine(), deps.client.address, report.decisions, report.deletion.deleted, dry_run=dry_run
            )
        except _UNREADABLE as exc:  # the engine refused or does not answer: said, and the run fails
            report.errors.append(f"local image store not pruned: {exc}")
    return report
