"""Verifies an environment after a traffic switch: smoke tests over its HTTP API, then a short k6 check."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import httpx

from shop_ops.resources.k6 import K6Error, K6Summary

VERIFY_SCRIPT = Path(__file__).resolve().parents[2] / "loadtests" / "verify.js"
SYNTHETIC = {"X-Synthetic": "1"}
SMOKE_EMAIL = "smoke-test@shop-ops.invalid"
BODY_TAIL = 300


class K6Runner(Protocol):
    """What runs k6 (the `K6Resource`, or anything with the same `run`)."""

    def run(self, script: Path, env: dict[str, str], timeout_s: float = ...) -> K6Summary: ...


class Check(NamedTuple):
    name: str
    ok: bool
    detail: str


@dataclass
class SmokeResult:
    """Smoke tests stop at the first failed check; `reason` names it (empty when all passed)."""

    passed: bool
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    order_id: int | None = None

    @property
    def reason(self) -> str:
        failed = next((c for c in self.checks if not c.ok), None)
        return f"smoke test failed: {failed.detail}" if failed else ""


@dataclass
class Verification:
    passed: bool
    reason: str
    smoke: SmokeResult
    k6: K6Summary | None
    seconds: float

    def numbers(self) -> dict[str, float]:
        """The k6 check's p95, error rate and request count (empty when k6 did not run)."""
        if self.k6 is None:
            return {}
        return {"k6_p95_ms": self.k6.p95_ms, "k6_error_rate": self.k6.error_rate, "k6_requests": self.k6.requests}


class _Failed(Exception):
    """One smoke check failed; the message says what."""


def _body(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:BODY_TAIL] if text else "(empty body)"


def _call(client: httpx.Client, what: str, method: str, path: str, expect: int, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise _Failed(f"{what} ({method} {path}) got no answer: {type(exc).__name__}: {exc}") from None
    if response.status_code != expect:
        raise _Failed(f"{what} answered {response.status_code} (expected {expect}): {_body(response)}")
    return response


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise _Failed(
            f"{what} answered {response.status_code} with a body that is not JSON: {_body(response)}"
        ) from None


def smoke_test(base_url: str, timeout: float = 10) -> SmokeResult:
    """Catalog, product page, cart, add an in-stock item, synthetic checkout, its idempotent retry, order lookup."""
    started = time.monotonic()
    result = SmokeResult(passed=False)

    def record(name: str, detail: str) -> None:
        result.checks.append(Check(name, True, detail))

    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, headers=SYNTHETIC) as client:
        name = "catalog"
        try:
            page = _json(_call(client, "catalog list", "GET", "/api/products", 200, params={"limit": 50}), name)
            in_stock = [p for p in page.get("items", []) if p.get("stock", 0) > 0]
            if not in_stock:
                raise _Failed(f"catalog list has no product in stock ({len(page.get('items', []))} listed)")
            # The best-stocked product: a synthetic order still takes one item of real stock.
            product_id = int(max(in_stock, key=lambda p: p["stock"])["id"])
            record(name, f"{len(page['items'])} products listed, product {product_id} in stock")

            name = "product page"
            product = _json(_call(client, name, "GET", f"/api/products/{product_id}", 200), name)
            if product.get("id") != product_id:
                raise _Failed(f"product page for {product_id} answered product {product.get('id')}")
            record(name, f"product {product_id}")

            name = "create cart"
            cart_id = _json(_call(client, name, "POST", "/api/carts", 201, json={}), name)["id"]
            record(name, f"cart {cart_id}")

            name = "add to cart"
            body = {"product_id": product_id, "quantity": 1}
            cart = _json(_call(client, name, "POST", f"/api/carts/{cart_id}/items", 200, json=body), name)
            if not any(i.get("product_id") == product_id for i in cart.get("items", [])):
                raise _Failed(f"add to cart answered 200 but product {product_id} is not in cart {cart_id}")
            record(name, f"product {product_id} in cart")

            name = "checkout"
            headers = {"Idempotency-Key": f"smoke-{uuid.uuid4()}"}
            order_body = {"cart_id": cart_id, "email": SMOKE_EMAIL}
            order = _json(_call(client, name, "POST", "/api/checkout", 201, json=order_body, headers=headers), name)
            result.order_id = int(order["id"])
            if order.get("synthetic") is not True:
                raise _Failed(f"checkout placed order {result.order_id} without the synthetic marker")
            record(name, f"order {result.order_id} placed (synthetic)")

            name = "checkout retry"
            retry = _json(_call(client, name, "POST", "/api/checkout", 200, json=order_body, headers=headers), name)
            if retry.get("id") != result.order_id:
                raise _Failed(
                    f"checkout retry with the same key answered order {retry.get('id')}, not {result.order_id}"
                )
            record(name, f"same order {result.order_id}")

            name = "order lookup"
            looked_up = _json(_call(client, name, "GET", f"/api/orders/{result.order_id}", 200), name)
            if looked_up.get("id") != result.order_id:
                raise _Failed(f"order lookup for {result.order_id} answered order {looked_up.get('id')}")
            record(name, f"order {result.order_id} found")
            result.passed = True
        except _Failed as exc:
            result.checks.append(Check(name, False, str(exc)))
        except (KeyError, TypeError, ValueError) as exc:
            result.checks.append(Check(name, False, f"{name} answered an unexpected body: {type(exc).__name__}: {exc}"))
    result.seconds = time.monotonic() - started
    return result


def k6_check(
    k6: K6Runner,
    base_url: str,
    rate: int = 50,
    duration: str = "5s",
    p95_ms: float = 200,
    script: Path = VERIFY_SCRIPT,
    timeout_s: float = 120,
) -> K6Summary:
    """`loadtests/verify.js` at `rate` req/s for `duration`; thresholds: p95 < `p95_ms`, no failed request."""
    env = {"BASE_URL": base_url.rstrip("/"), "RATE": str(rate), "DURATION": duration, "P95_MS": f"{p95_ms:g}"}
    return k6.run(script, env, timeout_s=timeout_s)


def _k6_reason(summary: K6Summary) -> str:
    numbers = f"p95 {summary.p95_ms:.1f} ms, error rate {summary.error_rate:.2%}, {summary.requests} requests"
    parts = []
    if summary.failed_thresholds:
        parts.append(f"threshold(s) not met: {', '.join(summary.failed_thresholds)}")
    if summary.exit_code not in (0, 99):  # 99 is k6's "thresholds crossed"; anything else stopped the script
        parts.append(f"k6 exited {summary.exit_code}: {summary.stderr_tail[-500:] or '(no output)'}")
    return f"k6 check failed: {'; '.join(parts) or f'k6 exited {summary.exit_code}'} ({numbers})"


def verify_environment(
    base_url: str,
    k6: K6Runner,
    rate: int = 50,
    duration: str = "5s",
    p95_ms: float = 200,
    timeout: float = 10,
    script: Path = VERIFY_SCRIPT,
) -> Verification:
    """Smoke tests, then (only if they passed) the k6 check; `reason` says what failed, empty when verified."""
    started = time.monotonic()
    smoke = smoke_test(base_url, timeout=timeout)
    summary: K6Summary | None = None
    if not smoke.passed:
        reason = smoke.reason
    else:
        try:
            summary = k6_check(k6, base_url, rate=rate, duration=duration, p95_ms=p95_ms, script=script)
            reason = "" if summary.passed else _k6_reason(summary)
        except K6Error as exc:
            reason = f"k6 check could not run: {exc}"
    passed = smoke.passed and summary is not None and summary.passed
    return Verification(passed, reason, smoke, summary, time.monotonic() - started)
