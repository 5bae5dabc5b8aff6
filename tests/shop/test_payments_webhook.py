"""The payment callback: signature and timestamp checked, each event applied once, refusals change nothing."""

from __future__ import annotations

import concurrent.futures
import hashlib
import stat
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient

from shop.errors import ApiError
from shop.main import create_app
from shop.openapi import EXAMPLE_BODY, EXAMPLE_SECRET, EXAMPLE_TIMESTAMP
from shop.payments import TOLERANCE_SECONDS, sign, signature_header, verify
from shop.settings import Settings, SettingsError
from shop.settings import load_settings as load_shop_settings
from shop_ops.definitions import registry_resource, release_target
from shop_ops.localenv.stack import _ensure_secret_file
from shop_ops.release import apps
from shop_ops.resources.ledger import LedgerResource
from shop_ops.services.processes import PostgresCluster
from shop_ops.settings import ROOT
from shop_ops.settings import load_settings as load_ops_settings

from .test_carts_api import in_stock_product
from .test_checkout_api import db_name, filled_cart

WEBHOOK = "/api/payments/webhook"
# The worked example of the API description, computed independently:
#   printf '%s' "$t.$body" | openssl dgst -sha256 -hmac "$secret" -hex
EXAMPLE_SIGNATURE = "4fd9526664e6205154837ce55197aaf8ea6b693cd770e35a86649ff14a4ef2d2"


# ---- the signature, without services ----


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    assert sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_BODY.encode()) == EXAMPLE_SIGNATURE
    body = b'{"id":"evt_1"}'
    now = 1_800_000_000
    header = signature_header("s" * 32, now, body)
    assert verify("s" * 32, header, body, now) == now
    # within the tolerance either side; several v1 entries (a secret being replaced): one must match
    assert verify("s" * 32, header, body, now + TOLERANCE_SECONDS) == now
    assert verify("s" * 32, header, body, now - TOLERANCE_SECONDS) == now
    assert verify("s" * 32, f"t={now},v1={'0' * 64},v1={sign('s' * 32, now, body)}", body, now) == now


@pytest.mark.parametrize(
    ("header", "body", "now", "code"),
    [
        (None, b"{}", 1000, "invalid_signature"),
        ("", b"{}", 1000, "invalid_signature"),
        ("v1=abc", b"{}", 1000, "invalid_signature"),  # no timestamp
        ("t=1000", b"{}", 1000, "invalid_signature"),  # no signature
        ("t=abc,v1=" + sign("k" * 16, 1000, b"{}"), b"{}", 1000, "invalid_signature"),
        ("t=1000,v1=" + sign("other-secret-xxxx", 1000, b"{}"), b"{}", 1000, "invalid_signature"),
        ("t=1000,v1=" + sign("k" * 16, 1000, b"{}"), b"{} ", 1000, "invalid_signature"),  # body changed
        ("t=1000,v1=" + sign("k" * 16, 1000, b"{}"), b"{}", 1000 + TOLERANCE_SECONDS + 1, "stale_signature"),
        ("t=1000,v1=" + sign("k" * 16, 1000, b"{}"), b"{}", 1000 - TOLERANCE_SECONDS - 1, "stale_signature"),
        ("t=999,v1=" + sign("k" * 16, 1000, b"{}"), b"{}", 1000, "invalid_signature"),  # timestamp changed
    ],
)
def test_signature_refusals(header, body, now, code):
    with pytest.raises(ApiError) as caught:
        verify("k" * 16, header, body, now)
    assert (caught.value.status, caught.value.code) == (401, code)


def test_not_configured_answers_503_naming_the_variable():
    settings = Settings(database_url="postgresql+asyncpg://x@127.0.0.1:1/x", redis_url="redis://127.0.0.1:1", env="dev")
    with TestClient(create_app(settings)) as client:  # the lifespan connects nothing until a query
        res = client.post(WEBHOOK, content=b"{}", headers={"X-Shop-Signature": "t=1,v1=00"})
    assert res.status_code == 503
    assert res.json()["error"]["code"] == "webhook_not_configured"
    assert "SHOP_PAYMENT_WEBHOOK_SECRET" in res.json()["error"]["message"]


def test_document_has_the_webhook_and_the_operation():
    settings = Settings(database_url="postgresql+asyncpg://x@127.0.0.1:1/x", redis_url="redis://127.0.0.1:1", env="dev")
    spec = create_app(settings).openapi()
    assert spec["openapi"].startswith("3.1")
    webhook = spec["webhooks"]["payment-event"]["post"]
    event_ref = {"$ref": "#/components/schemas/PaymentEvent"}
    assert webhook["requestBody"]["content"]["application/json"]["schema"] == event_ref
    operation = spec["paths"][WEBHOOK]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == event_ref
    assert [p["name"] for p in operation["parameters"] if p["required"]] == ["X-Shop-Signature"]
    assert {"200", "400", "401", "422", "503"} <= set(operation["responses"])
    event = spec["components"]["schemas"]["PaymentEvent"]
    assert event["properties"]["type"]["enum"] == ["payment.paid", "payment.failed", "payment.refunded"]
    assert f"v1={EXAMPLE_SIGNATURE}" in spec["info"]["description"]
    assert spec["components"]["schemas"]["Order"]["properties"]["payment_status"]["enum"] == [
        "pending", "paid", "failed", "refunded"
    ]  # fmt: skip


def test_local_backends_mount_the_secret_file_the_shop_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """shop-ops's wiring: `up` makes the file, the release target passes it, the backend reads it from its mount."""
    monkeypatch.delenv("SHOP_OPS_STAGING_PAYMENT_WEBHOOK_SECRET_FILE", raising=False)
    monkeypatch.setenv("SHOP_OPS_PRODUCTION_PAYMENT_WEBHOOK_SECRET_FILE", str(tmp_path / "production-webhook"))
    settings = load_ops_settings(ROOT / "config" / "local.yaml")
    assert settings.payment_webhook_secret_file("staging") == settings.state_path / "secrets" / (
        "staging-payment-webhook-secret"
    )
    target = release_target(settings, registry_resource(settings), LedgerResource(state_dir=str(tmp_path)))
    assert target.payment_webhook_secret_files == {
        "staging": str(settings.payment_webhook_secret_file("staging")),
        "production": str(tmp_path / "production-webhook"),
    }
    secret_file = tmp_path / "secrets" / "staging-payment-webhook-secret"
    _ensure_secret_file(secret_file)
    secret = secret_file.read_text()
    assert len(secret) >= 32 and stat.S_IMODE(secret_file.stat().st_mode) == 0o640
    env = target.shops["staging"].app_environment(
        stack="s", name="staging", database_url="postgresql+asyncpg://shop@127.0.0.1:5432/shop",
        password_file=tmp_path / "db-password", admin_token_file=tmp_path / "admin-token", log_folder=None,
        payment_webhook_secret_file=secret_file,
    )  # fmt: skip
    assert env.backend_mounts(serving=True)[secret_file] == apps.PAYMENT_WEBHOOK_SECRET_MOUNT
    backend = env.backend_env(8000)
    assert backend["SHOP_PAYMENT_WEBHOOK_SECRET_FILE"] == apps.PAYMENT_WEBHOOK_SECRET_MOUNT
    assert secret not in str(backend)
    # What the backend sees once the file is mounted where the variable points (outside dev too).
    inside = {k: v for k, v in backend.items() if not k.endswith("_FILE")}
    inside["SHOP_PAYMENT_WEBHOOK_SECRET_FILE"] = str(secret_file)
    shop = load_shop_settings(inside)
    assert shop.env == "production" and shop.payment_webhook_secret is not None
    assert shop.payment_webhook_secret.get_secret_value() == secret
    # Without a file (another target's wiring) the variable is not set: the shop answers 503.
    bare = replace(env, payment_webhook_secret_file=None)
    assert "SHOP_PAYMENT_WEBHOOK_SECRET_FILE" not in bare.backend_env(8000)


def test_placeholder_or_short_webhook_secret_stops_the_backend(tmp_path: Path):
    base = {"SHOP_DATABASE_URL": "postgresql+asyncpg://shop@127.0.0.1:5432/shop", "SHOP_REDIS_URL": "redis://x"}
    secret_file = tmp_path / "webhook"
    secret_file.write_text("change-me-to-the-providers-secret\n")
    with pytest.raises(SettingsError, match=r"^SHOP_PAYMENT_WEBHOOK_SECRET_FILE holds a placeholder"):
        load_shop_settings({**base, "SHOP_PAYMENT_WEBHOOK_SECRET_FILE": str(secret_file)})
    with pytest.raises(SettingsError, match=r"^SHOP_PAYMENT_WEBHOOK_SECRET is invalid: is shorter than 16"):
        load_shop_settings({**base, "SHOP_PAYMENT_WEBHOOK_SECRET": "short"})


# ---- against the running backend and PostgreSQL ----


def new_order(client: httpx.Client) -> int:
    cart_id = filled_cart(client, in_stock_product(client)["id"])
    res = client.post(
        "/api/checkout",
        json={"cart_id": cart_id, "email": "pay@example.com"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert res.status_code == 201, res.text
    assert res.json()["payment_status"] == "pending"
    return res.json()["id"]


def event(order_id: int, kind: str = "payment.paid", event_id: str | None = None) -> bytes:
    body = {"id": event_id or f"evt_{uuid.uuid4().hex}", "type": kind, "order_id": order_id,
            "amount_cents": 1999, "created": int(time.time())}  # fmt: skip
    return orjson.dumps(body)


def deliver(client: httpx.Client, secret: str, body: bytes, timestamp: float | None = None) -> httpx.Response:
    header = signature_header(secret, int(time.time() if timestamp is None else timestamp), body)
    return client.post(WEBHOOK, content=body, headers={"X-Shop-Signature": header, "Content-Type": "application/json"})


class Db:
    def __init__(self, postgres: PostgresCluster, url: str) -> None:
        self.postgres, self.name = postgres, db_name(url)

    def status(self, order_id: int) -> str:
        return self.postgres.psql(f"SELECT payment_status FROM orders WHERE id = {order_id}", self.name).strip()

    def events(self, order_id: int) -> list[str]:
        """The order's event rows: id|type|applied|payload hash|received_at, oldest first."""
        sql = (
            "SELECT event_id, type, applied, payload_sha256, received_at FROM payment_events "
            f"WHERE order_id = {order_id} ORDER BY received_at, event_id"
        )
        return [line for line in self.postgres.psql(sql, self.name).splitlines() if line.strip()]

    def event_count(self) -> int:
        return int(self.postgres.psql("SELECT count(*) FROM payment_events", self.name))


@pytest.fixture
def db(postgres: PostgresCluster, shop_db: str) -> Db:
    return Db(postgres, shop_db)


def test_valid_event_is_applied_once_and_a_replay_changes_nothing(
    client: httpx.Client, db: Db, payment_webhook_secret: str
):
    order_id = new_order(client)
    body = event(order_id, event_id="evt_paid_once_" + uuid.uuid4().hex[:8])
    res = deliver(client, payment_webhook_secret, body)
    assert res.status_code == 200, res.text
    event_id = orjson.loads(body)["id"]
    receipt = {"event_id": event_id, "order_id": order_id, "duplicate": False, "applied": True,
               "payment_status": "paid"}  # fmt: skip
    assert res.json() == receipt
    assert client.get(f"/api/orders/{order_id}").json()["payment_status"] == "paid"
    rows = db.events(order_id)
    assert len(rows) == 1
    assert rows[0].startswith(f"{event_id}|payment.paid|t|{hashlib.sha256(body).hexdigest()}|")

    # the same delivery again (the provider retries): 200, nothing changed, not even received_at
    again = deliver(client, payment_webhook_secret, body)
    assert again.status_code == 200, again.text
    assert again.json() == receipt | {"duplicate": True, "applied": False}
    assert db.events(order_id) == rows and db.status(order_id) == "paid"


def test_refusals_change_nothing(client: httpx.Client, db: Db, payment_webhook_secret: str):
    order_id = new_order(client)
    count = db.event_count()
    body = event(order_id)
    now = time.time()
    cases = [
        # (what, request, status, code)
        ("bad signature", dict(content=body, headers={"X-Shop-Signature": signature_header("x" * 32, int(now), body)}),
         401, "invalid_signature"),
        ("missing signature", dict(content=body), 401, "invalid_signature"),
        ("malformed signature", dict(content=body, headers={"X-Shop-Signature": "sha256=abc"}), 401, "invalid_signature"),
        ("signed another body", dict(content=event(order_id),
         headers={"X-Shop-Signature": signature_header(payment_webhook_secret, int(now), body)}), 401, "invalid_signature"),
        ("stale", dict(content=body, headers={"X-Shop-Signature": signature_header(
            payment_webhook_secret, int(now) - TOLERANCE_SECONDS - 60, body)}), 401, "stale_signature"),
        ("from the future", dict(content=body, headers={"X-Shop-Signature": signature_header(
            payment_webhook_secret, int(now) + TOLERANCE_SECONDS + 60, body)}), 401, "stale_signature"),
    ]  # fmt: skip
    for what, request, status, code in cases:
        res = client.post(WEBHOOK, **request)
        assert res.status_code == status, (what, res.text)
        error = res.json()["error"]
        assert error["code"] == code, what
        assert error["request_id"] == res.headers["x-request-id"]
    signed = [
        ("unknown order", event(2**40), 422, "unknown_order"),
        ("malformed JSON", b'{"id": "evt_x", "type": ', 400, "malformed_json"),
        ("wrong type", event(order_id, kind="payment.disputed"), 422, "validation_error"),
        ("bad event id", orjson.dumps(orjson.loads(event(order_id)) | {"id": "x' OR 1=1"}), 422, "validation_error"),
        ("not an object", b"[]", 422, "validation_error"),
    ]
    for what, content, status, code in signed:
        res = deliver(client, payment_webhook_secret, content)
        assert res.status_code == status, (what, res.text)
        assert res.json()["error"]["code"] == code, what
    assert db.status(order_id) == "pending" and db.events(order_id) == []
    assert db.event_count() == count
    assert client.get(f"/api/orders/{order_id}").json()["payment_status"] == "pending"


def test_status_never_moves_backwards(client: httpx.Client, db: Db, payment_webhook_secret: str):
    order_id = new_order(client)
    # a refund of an unpaid order: recorded, not applied
    res = deliver(client, payment_webhook_secret, event(order_id, "payment.refunded"))
    assert res.json() | {"event_id": ""} == {"event_id": "", "order_id": order_id, "duplicate": False,
                                             "applied": False, "payment_status": "pending"}  # fmt: skip
    steps = [  # (event, applied, status after)
        ("payment.failed", True, "failed"),
        ("payment.paid", True, "paid"),  # a later attempt succeeded
        ("payment.failed", False, "paid"),  # out of order: an older attempt's failure
        ("payment.refunded", True, "refunded"),
        ("payment.paid", False, "refunded"),  # nothing after a refund
    ]
    for kind, applied, status in steps:
        res = deliver(client, payment_webhook_secret, event(order_id, kind))
        assert res.status_code == 200, res.text
        assert (res.json()["applied"], res.json()["payment_status"]) == (applied, status), kind
        assert db.status(order_id) == status
    applied_flags = [row.split("|")[2] for row in db.events(order_id)]
    assert applied_flags == ["f", "t", "t", "f", "t", "f"]


def test_concurrent_identical_deliveries_store_one_event(client: httpx.Client, db: Db, payment_webhook_secret: str):
    order_id = new_order(client)
    body = event(order_id)
    start = threading.Barrier(4)

    def send() -> httpx.Response:
        with httpx.Client(base_url=str(client.base_url), timeout=10) as own:
            start.wait()
            return deliver(own, payment_webhook_secret, body)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = [f.result() for f in [pool.submit(send) for _ in range(4)]]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True]
    assert sum(a.json()["applied"] for a in answers) == 1
    assert {a.json()["payment_status"] for a in answers} == {"paid"}
    assert len(db.events(order_id)) == 1 and db.status(order_id) == "paid"
