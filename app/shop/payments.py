"""The payment provider's callback: its signature checked, its event applied to the order once per event id.

Signature scheme (the header `X-Shop-Signature: t=<unix seconds>,v1=<hex>`): v1 is the lowercase hex
HMAC-SHA256, keyed with the webhook secret (SHOP_PAYMENT_WEBHOOK_SECRET), of `<t>.<raw request body>`.
Several `v1=` entries may be sent (the provider signs with an old and a new secret while one is replaced);
one matching is enough. `t` must be within TOLERANCE_SECONDS of the shop's clock, either side.

Payment status: pending -> paid | failed; failed -> paid (a later attempt succeeded); paid -> refunded.
Nothing moves it backwards: an event that would (a `payment.failed` after `payment.paid`, a refund of an
order never paid, anything after a refund) is recorded with `applied = false` and changes nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.db import fetchrow
from shop.errors import ApiError

SIGNATURE_HEADER = "X-Shop-Signature"
TOLERANCE_SECONDS = 300
SECRET_VARIABLE = "SHOP_PAYMENT_WEBHOOK_SECRET"

# Event type -> (the status it sets, the statuses it may move an order from).
TRANSITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "payment.paid": ("paid", ("pending", "failed")),
    "payment.failed": ("failed", ("pending",)),
    "payment.refunded": ("refunded", ("paid",)),
}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature: hex HMAC-SHA256 of `<timestamp>.<body>` keyed with `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Shop-Signature` value a provider sends for `body` at `timestamp`."""
    return f"t={timestamp},v1={sign(secret, timestamp, body)}"


def _invalid(reason: str) -> ApiError:
    return ApiError(401, "invalid_signature", f"{SIGNATURE_HEADER} {reason}; sign the raw body (see the API docs)")


def parse_signature_header(header: str | None) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) of an `X-Shop-Signature` value; 401 invalid_signature if malformed."""
    if not header:
        raise _invalid("is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise _invalid("is malformed: expected t=<unix seconds>,v1=<hex HMAC-SHA256>")
    return timestamp, signatures


def verify(secret: str, header: str | None, body: bytes, now: float) -> int:
    """The signed timestamp, once `header` carries a valid signature of `body` made within the tolerance.

    401 invalid_signature for a missing, malformed or wrong signature; 401 stale_signature for a correct
    one whose timestamp is more than TOLERANCE_SECONDS from `now` (the signature is checked first, so
    only the secret's holder learns that a timestamp was the problem).
    """
    timestamp, signatures = parse_signature_header(header)
    expected = sign(secret, timestamp, body)
    # Every candidate compared in constant time; no early exit on the first match.
    matches = [hmac.compare_digest(expected, candidate) for candidate in signatures]
    if not any(matches):
        raise _invalid("does not match the body")
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise ApiError(
            401,
            "stale_signature",
            f"the signature's timestamp is more than {TOLERANCE_SECONDS} s from the shop's clock; "
            "sign when sending (and check the sender's clock)",
        )
    return timestamp


@dataclass(frozen=True)
class Outcome:
    """What an event did: recorded now (False for a replay), applied to the order, the order's status after."""

    recorded: bool
    applied: bool
    payment_status: str

    def doc(self, event_id: str, order_id: int) -> dict[str, Any]:
        return {
            "event_id": event_id,
            "order_id": order_id,
            "duplicate": not self.recorded,
            "applied": self.applied,
            "payment_status": self.payment_status,
        }


# The event row and the order's status in ONE statement, so one transaction. The order's row is locked
# first (FOR UPDATE: events of one order take turns, and each sees the status the previous one left);
# the event row is inserted only for an existing order and only once per event id (a concurrent duplicate
# waits on the order's lock, then conflicts on the primary key and inserts nothing); the order moves only
# from an allowed status, and only when the event was recorded now.
# Parameters: $1 event id, $2 order id, $3 type, $4 amount, $5 payload hash, $6 new status, $7 allowed from.
_APPLY_SQL = """
    WITH target AS (
        SELECT id, payment_status, payment_status = ANY($7::text[]) AS movable FROM orders WHERE id = $2 FOR UPDATE
    ), recorded AS (
        INSERT INTO payment_events (event_id, order_id, type, amount_cents, applied, payload_sha256)
        SELECT $1, id, $3, $4, movable, $5 FROM target
        ON CONFLICT (event_id) DO NOTHING
        RETURNING applied
    ), moved AS (
        UPDATE orders o SET payment_status = $6
        FROM recorded
        WHERE o.id = $2 AND recorded.applied
        RETURNING o.payment_status
    )
    SELECT EXISTS (SELECT 1 FROM target) AS order_exists,
           EXISTS (SELECT 1 FROM recorded) AS recorded,
           (SELECT payment_status FROM moved) AS moved_to,
           (SELECT payment_status FROM target) AS status_before
"""


class Payments:
    """Applies the provider's events to orders."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def apply(
        self, event_id: str, order_id: int, event_type: str, amount_cents: int | None, body: bytes
    ) -> Outcome:
        """Record the event and move the order's payment status, once per event id; 422 unknown_order."""
        status, allowed = TRANSITIONS[event_type]
        payload_hash = hashlib.sha256(body).hexdigest()
        row = await self._apply([event_id, order_id, event_type, amount_cents, payload_hash, status, list(allowed)])
        if not row["order_exists"]:
            raise ApiError(
                422, "unknown_order", f"order {order_id} is not an order of this shop; the event was not recorded"
            )
        moved_to = row["moved_to"]
        return Outcome(
            recorded=row["recorded"], applied=moved_to is not None, payment_status=moved_to or row["status_before"]
        )

    async def _apply(self, args: list[Any]) -> Any:
        """Run the statement (one round trip, one transaction on its own); retried on deadlock."""
        for attempt in range(3):
            try:
                return await fetchrow(self.engine, _APPLY_SQL, *args)
            except asyncpg.exceptions.DeadlockDetectedError:
                if attempt == 2:
                    raise
        raise AssertionError("not reached")
