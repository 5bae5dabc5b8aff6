"""The release rules for schema changes (shop_ops/release/schema.py) over a real release ledger (SQLite, PostgreSQL).

The containers side (shop-migrate --expand-only in a release image, a rollback refused through
the router) is in test_bluegreen.py; here are the decisions, case by case.
"""

from __future__ import annotations

from shop_ops.release.schema import contract_blocker, rollback_blocker
from shop_ops.resources.ledger import ReleaseLedger

OLD = "sha256:" + "a" * 64
NEW = "sha256:" + "b" * 64
FRONT = "sha256:" + "f" * 64


def release(ledger: ReleaseLedger, version: str, backend: str, previous: str | None = None) -> str:
    """A release that verified on staging (and replaced `previous`)."""
    release_id = ledger.start("staging", version, backend, FRONT, "blue")
    ledger.finish(release_id, "verified")
    if previous is not None:
        ledger.mark(previous, "replaced")
    return release_id


def test_contracting_waits_until_the_image_serves_alone(ledger: ReleaseLedger) -> None:
    assert "no release is recorded as serving staging" in (contract_blocker(ledger, "staging", NEW) or "")
    release(ledger, "1.0.0", OLD)
    blocker = contract_blocker(ledger, "staging", NEW)
    assert blocker is not None and blocker.startswith("1.0.0 (backend aaaaaaaaaaaa) still serves staging")
    assert contract_blocker(ledger, "staging", OLD) is None
    assert contract_blocker(ledger, "production", OLD) is not None  # per environment


def test_rollback_refused_after_a_contraction_by_a_later_image(ledger: ReleaseLedger) -> None:
    first = release(ledger, "1.0.0", OLD)
    ledger.record_migration("staging", OLD, None, "0002", [("0001", "expand"), ("0002", "expand")], [])
    release(ledger, "2.0.0", NEW, previous=first)
    ledger.record_migration("staging", NEW, "0002", "0003", [("0003", "expand")], [("0004", "contract")])
    target = ledger.previous_verified("staging")
    assert target is not None and target.version == "1.0.0"
    assert rollback_blocker(ledger, "staging", target, "0003") is None  # expand only since 1.0.0: allowed

    ledger.record_migration("staging", NEW, "0003", "0004", [("0004", "contract")], [])
    blocker = rollback_blocker(ledger, "staging", target, "0004")
    assert blocker is not None and blocker.startswith("contracting migration 0004 ran on staging after 1.0.0")
    assert "bbbbbbbbbbbb" in blocker and "Roll forward" in blocker
    assert next(m for m in ledger.migrations("staging") if m.contracting).contracting == ("0004",)


def test_rollback_allowed_over_a_contraction_the_target_ran_itself(ledger: ReleaseLedger) -> None:
    # 1.0.0 held its contracting migration back, ran it once it served alone, then 2.0.0 came.
    first = release(ledger, "1.0.0", OLD)
    ledger.record_migration("staging", OLD, "0002", "0003", [("0003", "expand")], [("0004", "contract")])
    ledger.record_migration("staging", OLD, "0003", "0004", [("0004", "contract")], [])
    release(ledger, "2.0.0", NEW, previous=first)
    ledger.record_migration("staging", NEW, "0004", "0004", [], [])
    target = ledger.previous_verified("staging")
    assert target is not None and rollback_blocker(ledger, "staging", target, "0004") is None


def test_rollback_refused_when_the_schema_changed_outside_the_pipeline(ledger: ReleaseLedger) -> None:
    first = release(ledger, "1.0.0", OLD)
    ledger.record_migration("staging", OLD, None, "0002", [("0001", "expand"), ("0002", "expand")], [])
    release(ledger, "2.0.0", NEW, previous=first)
    target = ledger.previous_verified("staging")
    assert target is not None
    blocker = rollback_blocker(ledger, "staging", target, "0007")
    assert blocker is not None
    assert "at revision 0007, but the last migration the pipeline recorded left it at 0002" in blocker
