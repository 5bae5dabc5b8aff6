"""The fingerprint of a database at one snapshot: per table, its row count and an order-independent row hash."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

SCHEMA = "public"
FORMAT_VERSION = 1

# Row text depends on these session settings (timestamptz in the session's time zone, float
# digits, bytea and money output); a backup and its restore must render rows identically
# whatever the two servers' defaults are, so both sides pin them (SET LOCAL: this transaction only).
CANONICAL_SETTINGS = (
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO, YMD"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
)

# Ordinary tables (partitions included, their partitioned parents not: those hold no rows of
# their own and would count every row twice), with or without a primary key.
_TABLES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname
"""

# Each row's whole text form -> md5 -> its first 64 bits as a signed bigint; the table's hash is
# the exact (numeric) SUM of those. Addition is commutative, so row order and physical layout do
# not matter; unlike XOR, a sum does not cancel duplicate rows (tables without a key may hold them).
# ROW(r.*) is the whole row even if a column happens to be called like the alias.
_TABLE_HASH = """
SELECT count(*), coalesce(sum(('x' || left(md5(ROW(r.*)::text), 16))::bit(64)::bigint), 0)::text
FROM {table} AS r
"""


@dataclass(frozen=True)
class Fingerprint:
    """Table name -> (row count, hash as a decimal string) for the tables of the `public` schema."""

    tables: dict[str, tuple[int, str]] = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.tables.items())))

    @property
    def rows(self) -> int:
        return sum(rows for rows, _ in self.tables.values())

    def to_json(self) -> str:
        # The hash is a string: JSON readers with 53-bit numbers (the Dagster UI) would round it.
        tables = {name: {"rows": rows, "hash": digest} for name, (rows, digest) in sorted(self.tables.items())}
        return json.dumps({"version": FORMAT_VERSION, "schema": SCHEMA, "tables": tables}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        data: dict[str, Any] = json.loads(text)
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"fingerprint format version {data.get('version')!r}, expected {FORMAT_VERSION}")
        return cls({name: (int(t["rows"]), str(t["hash"])) for name, t in data["tables"].items()})

    def diff(self, other: Fingerprint) -> list[str]:
        """How `other` differs from this one (the expected), one line per table; empty when equal."""
        problems = []
        for name in sorted(self.tables.keys() | other.tables.keys()):
            if name not in other.tables:
                problems.append(f"table {name}: missing")
            elif name not in self.tables:
                problems.append(f"table {name}: extra (not in the expected fingerprint)")
            else:
                (rows_a, hash_a), (rows_b, hash_b) = self.tables[name], other.tables[name]
                if rows_a != rows_b:
                    problems.append(f"table {name}: rows {rows_a} -> {rows_b}")
                elif hash_a != hash_b:
                    problems.append(f"table {name}: hash differs ({rows_a} rows each)")
        return problems


def pin_settings(cursor: Any) -> None:
    """SET LOCAL the settings that row text depends on (call inside the fingerprint's transaction)."""
    for name, value in CANONICAL_SETTINGS:
        cursor.execute("SELECT set_config(%s, %s, true)", (name, value))


def compute_fingerprint(conn: Any) -> Fingerprint:
    """The fingerprint of what `conn`'s current transaction sees (a psycopg2 connection).

    For one consistent picture the caller runs this in a REPEATABLE READ transaction; the
    settings it pins are local to that transaction.
    """
    tables: dict[str, tuple[int, str]] = {}
    with conn.cursor() as cur:
        pin_settings(cur)
        cur.execute(_TABLES, (SCHEMA,))
        for (name,) in cur.fetchall():
            cur.execute(sql.SQL(_TABLE_HASH).format(table=sql.Identifier(SCHEMA, name)))
            rows, digest = cur.fetchone()
            tables[name] = (int(rows), str(digest))
    return Fingerprint(tables)
