"""The release ledger file (shop_ops/release/ledger.py): a ledger written by an earlier version opens and keeps its rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shop_ops.release.ledger import FILENAME, ReleaseLedger

DIGEST = "sha256:" + "a" * 64

# The releases table as the first version wrote it (no measures column).
FIRST_SCHEMA = """
CREATE TABLE releases (
    release_id TEXT PRIMARY KEY, environment TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'deploy',
    version TEXT NOT NULL, backend_digest TEXT NOT NULL, frontend_digest TEXT NOT NULL, slot TEXT NOT NULL,
    status TEXT NOT NULL, approved_by TEXT, started_at REAL NOT NULL, finished_at REAL,
    previous_release_id TEXT, reason TEXT, steps TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO releases (release_id, environment, version, backend_digest, frontend_digest, slot, status, started_at,
                      finished_at, steps)
VALUES ('staging-old', 'staging', '0.1.0', 'sha256:aaaa', 'sha256:bbbb', 'green', 'verified', 1.0, 2.0,
        '{"migrate": 1.5}');
"""


def test_a_ledger_from_the_first_version_gains_measures_and_keeps_its_rows(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / FILENAME) as conn:
        conn.executescript(FIRST_SCHEMA)
    ledger = ReleaseLedger(tmp_path)
    old = ledger.serving("staging")
    assert old is not None and (old.release_id, old.steps, old.measures) == ("staging-old", {"migrate": 1.5}, {})

    new = ledger.start("staging", "0.2.0", DIGEST, DIGEST, "blue", previous_release_id=old.release_id)
    ledger.finish(new, "verified", steps={"verify": 5.2}, measures={"k6_p95_ms": 12.5, "k6_error_rate": 0.0})
    ledger.mark(old.release_id, "replaced")
    assert ledger.get(new).measures == {"k6_p95_ms": 12.5, "k6_error_rate": 0.0}
    rows = ledger.history("staging")
    assert [r["status"] for r in rows] == ["replaced", "verified"]
    assert rows[1]["k6_p95_ms"] == 12.5 and rows[1]["verify_seconds"] == 5.2 and "k6_p95_ms" not in rows[0]
    ReleaseLedger(tmp_path)  # opening it again changes nothing
    assert len(ledger.history()) == 2
