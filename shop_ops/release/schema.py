"""The release rules for schema changes: expand-only while an older release serves; no rollback across a contraction.

A contracting migration (`phase = "contract"`) removes what older code may still read. So it
runs only from the backend image that serves the environment alone (per the release ledger);
any other migration run is `--expand-only` and holds it back, saying why. Every run is
recorded in the ledger, and a rollback to a release is refused once a contracting migration
from another image has run since that release was deployed, or when the database is at a
revision the ledger did not record (changed outside the pipeline: whether it contracted is
unknown).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shop_ops.release.migrations import MigrationResult, migrate_database
from shop_ops.resources.containers import DockerEngine, RegistryAuth
from shop_ops.resources.ledger import LedgerEntry, ReleaseLedger


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def contract_blocker(ledger: ReleaseLedger, environment: str, backend_digest: str) -> str | None:
    """Why contracting migrations from this backend image must wait on `environment`, or None when they may run."""
    serving = ledger.serving(environment)
    if serving is None:
        return f"no release is recorded as serving {environment}, so an older one may still serve"
    if serving.backend_digest != backend_digest:
        return f"{serving.version} (backend {short(serving.backend_digest)}) still serves {environment}"
    return None


@dataclass(frozen=True)
class SchemaChange:
    """A migration run under the release rules; `waiting` says why held-back migrations wait ('' when none)."""

    result: MigrationResult
    expand_only: bool
    waiting: str

    def metadata(self) -> dict[str, str | bool]:
        return {
            "revision_before": self.result.revision_before or "none",
            "revision_after": self.result.revision_after or "none",
            "applied": ", ".join(f"{rev} ({phase})" for rev, phase in self.result.applied) or "none",
            "held_back": ", ".join(f"{rev} ({phase})" for rev, phase in self.result.held_back) or "none",
            "expand_only": self.expand_only,
        }


def migrate_environment(
    engine: DockerEngine,
    environment: str,
    image: str,
    backend_digest: str,
    database_url: str,
    password_file: Path | None,
    ledger: ReleaseLedger,
    *,
    registry_auth: RegistryAuth | None = None,
    insecure_registry: bool = False,
    log: Callable[[str], None] = lambda _line: None,
) -> SchemaChange:
    """shop-migrate to head from `image` (= `backend_digest`), expand-only unless that image serves alone; recorded."""
    blocker = contract_blocker(ledger, environment, backend_digest)
    result = migrate_database(
        engine, image, database_url, password_file, registry_auth=registry_auth,
        insecure_registry=insecure_registry, expand_only=blocker is not None,
    )  # fmt: skip
    ledger.record_migration(
        environment, backend_digest, result.revision_before, result.revision_after, result.applied, result.held_back
    )
    applied = ", ".join(f"{rev} ({phase})" for rev, phase in result.applied) or "nothing"
    log(f"{environment}: migrated {result.revision_before} -> {result.revision_after}: applied {applied}")
    waiting = ""
    if result.held_back:
        held = ", ".join(f"{rev} ({phase})" for rev, phase in result.held_back)
        waiting = (
            f"{held} held back: contracting migrations do not run while {blocker}; run {environment}/database_schema "
            "once this release serves alone"
        )
        log(f"{environment}: {waiting}")
    return SchemaChange(result, expand_only=blocker is not None, waiting=waiting)


def rollback_blocker(
    ledger: ReleaseLedger, environment: str, target: LedgerEntry, db_revision: str | None
) -> str | None:
    """Why `environment` must not go back to `target` because of its schema, or None when it may."""
    recorded = ledger.migrations(environment)
    for record in recorded:
        if record.at >= target.started_at and record.contracting and record.backend_digest != target.backend_digest:
            return (
                f"contracting migration {', '.join(record.contracting)} ran on {environment} after {target.version} "
                f"was deployed (from backend {short(record.backend_digest)}); {target.version} may need what it "
                "removed. Roll forward with a fixed release instead"
            )
    if recorded and recorded[-1].revision_after != db_revision:
        return (
            f"the {environment} database is at revision {db_revision}, but the last migration the pipeline recorded "
            f"left it at {recorded[-1].revision_after}: it was changed outside the pipeline, so whether it contracted "
            f"is unknown. Check the schema, then deploy a release instead of rolling back"
        )
    return None
