"""Request and response models: validation of input and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from shop.retention import MAX_AGE_SECONDS

CART_ID_PATTERN = r"^[0-9a-f]{32}$"


def storable_text(value: str | None) -> str | None:
    """Refuse text that PostgreSQL cannot store or that lost bytes on the way in (answered 422).

    PostgreSQL refuses NUL in text (the query would fail with a 500). Percent-encoded bytes
    that are not UTF-8 (`?q=%FF`) reach the app as U+FFFD, the replacement character: the
    query string and path are decoded with errors="replace" before any validator sees them,
    so U+FFFD is where invalid UTF-8 shows. (JSON bodies with invalid UTF-8 or lone
    surrogates are refused before this.)
    """
    if value is None:
        return value
    if "\x00" in value:
        raise PydanticCustomError("string_nul", "must not contain NUL bytes")
    if "\ufffd" in value:
        raise PydanticCustomError("string_not_utf8", "must be valid UTF-8 (U+FFFD marks bytes that were not)")
    return value


# Every text query/path parameter and text body field ends its Annotated metadata with
# StorableText: `Annotated[str, Query(max_length=100), StorableText]`. Last, so that length
# and pattern limits still apply to the string itself (with their usual messages) and the
# OpenAPI document is unchanged; a limit placed after a validator is checked generically.
StorableText = AfterValidator(storable_text)

PRODUCT_EXAMPLE = {
    "id": 1,
    "sku": "SKU-000001",
    "name": "Sturdy Oak Lamp",
    "description": "A sturdy lamp made of oak, for the living room.",
    "price_cents": 4599,
    "stock": 17,
    "category": "home",
}


class Product(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PRODUCT_EXAMPLE]})
    id: int
    sku: str
    name: str
    description: str
    price_cents: int
    stock: int
    category: str


class ProductPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"items": [PRODUCT_EXAMPLE], "page": 1, "limit": 20, "total": 1}]}
    )
    items: list[Product]
    page: int
    limit: int
    total: int


class CartLine(BaseModel):
    product_id: int
    name: str
    price_cents: int
    quantity: int
    line_total_cents: int


CART_EXAMPLE = {
    "id": "3f2c0a9d1b7e4c6a8d5f0e1b2c3d4e5f",
    "items": [
        {"product_id": 1, "name": "Sturdy Oak Lamp", "price_cents": 4599, "quantity": 2, "line_total_cents": 9198}
    ],
    "total_cents": 9198,
    "item_count": 2,
}


class Cart(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [CART_EXAMPLE]})
    id: str
    items: list[CartLine]
    total_cents: int
    item_count: int


class AddItem(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"product_id": 1, "quantity": 2}]})
    product_id: int = Field(gt=0)
    quantity: int = Field(default=1, gt=0, le=1000)


class SetQuantity(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"quantity": 3}]})
    quantity: int = Field(gt=0, le=1000)


class CheckoutRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"cart_id": CART_EXAMPLE["id"], "email": "ada@example.com"}]},
    )
    cart_id: Annotated[str, Field(pattern=CART_ID_PATTERN), StorableText]
    # \x85 (NEL) is in the \s of the Rust regex engine pydantic validates with, not in that of
    # ECMA-262, which reads the OpenAPI document: named, so that both refuse it. U+FFFD too: StorableText
    # refuses it (it marks bytes that were not UTF-8), so the document says so rather than promise it.
    email: Annotated[
        str,
        Field(pattern=r"^[^@\s\x85\ufffd]+@[^@\s\x85\ufffd]+\.[^@\s\x85\ufffd]+$", max_length=254),
        StorableText,
    ]


PaymentStatus = Literal["pending", "paid", "failed", "refunded"]


class OrderLine(BaseModel):
    product_id: int
    name: str
    price_cents: int
    quantity: int


class Order(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 17,
                    "number": "SO-00000017",
                    "email": "ada@example.com",
                    "status": "placed",
                    "total_cents": 9198,
                    "items": [{"product_id": 1, "name": "Sturdy Oak Lamp", "price_cents": 4599, "quantity": 2}],
                    "synthetic": False,
                    "created_at": "2026-11-27T10:00:00+00:00",
                    "payment_status": "paid",
                }
            ]
        }
    )
    id: int
    number: str
    email: str
    status: str
    total_cents: int
    items: list[OrderLine]
    synthetic: bool
    created_at: datetime
    payment_status: PaymentStatus = Field(
        description="set by the payment provider's events (POST /api/payments/webhook); `pending` until one arrives"
    )


PAYMENT_EVENT_EXAMPLE = {
    "id": "evt_1QxY2Z3a4b5c",
    "type": "payment.paid",
    "order_id": 17,
    "amount_cents": 9198,
    "created": 1796119200,
}


class PaymentEvent(BaseModel):
    """An event of the payment provider about one order's payment, as it signs and sends it."""

    model_config = ConfigDict(json_schema_extra={"examples": [PAYMENT_EVENT_EXAMPLE]})
    id: Annotated[str, Field(pattern=r"^evt_[A-Za-z0-9_-]{1,100}$", description="unique per event; replays reuse it")]
    type: Literal["payment.paid", "payment.failed", "payment.refunded"]
    order_id: Annotated[int, Field(ge=1, le=2**62, description="the order's `id` (not its number)")]
    amount_cents: Annotated[int | None, Field(ge=0, le=2**62, description="what was paid or refunded")] = None
    created: Annotated[int, Field(ge=0, description="when the provider created the event (unix seconds)")]


class PaymentReceipt(BaseModel):
    """The shop's answer to a payment event (200 for a new event and for a replay alike)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"event_id": "evt_1QxY2Z3a4b5c", "order_id": 17, "duplicate": False, "applied": True,
                 "payment_status": "paid"}
            ]
        }
    )  # fmt: skip
    event_id: str
    order_id: int
    duplicate: bool = Field(description="true when this event id was received before: nothing changed")
    applied: bool = Field(description="whether this delivery moved the order's payment status")
    payment_status: PaymentStatus = Field(description="the order's payment status after the event")


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    database: str = Field(examples=["ok"])
    redis: str = Field(examples=["ok"])
    schema_state: str = Field(
        examples=["current"],
        description=(
            "current, ahead (a later release migrated), contract_pending (only contracting migrations wait: ready)"
            " or behind (not ready)"
        ),
    )
    db_revision: str | None = Field(examples=["0002"])
    code_revision: str = Field(examples=["0002"])


class VersionInfo(BaseModel):
    version: str = Field(examples=["0.1.0"])
    git_commit: str = Field(examples=["a1b2c3d"])
    schema_head: str = Field(examples=["0002"])


class ProductUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"price_cents": 3999, "stock": 40}]})
    name: Annotated[str | None, Field(min_length=1, max_length=200), StorableText] = None
    description: Annotated[str | None, Field(max_length=5000), StorableText] = None
    price_cents: int | None = Field(default=None, ge=0)
    stock: int | None = Field(default=None, ge=0)
    category: Annotated[str | None, Field(min_length=1, max_length=100), StorableText] = None


class RestockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"min_stock": 1000}]})
    min_stock: int = Field(ge=1, le=1_000_000, description="every product with less stock gets exactly this")


class RestockResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"restocked": 42, "min_stock": 1000}]})
    restocked: int = Field(description="how many products were below min_stock and were raised to it")
    min_stock: int


class PurgeSyntheticOrders(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"older_than_seconds": 86400}]})
    older_than_seconds: int = Field(
        ge=0,
        le=MAX_AGE_SECONDS,
        description="delete synthetic orders created longer ago than this; 0 deletes every one placed so far",
    )


class PurgeResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"deleted": 5210}]})
    deleted: int = Field(description="synthetic orders deleted, with their lines")


class OrderStatistics(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "since": "2026-11-01T00:00:00Z",
                    "until": "2026-12-01T00:00:00Z",
                    "orders": 1840,
                    "revenue_cents": 9212000,
                    "synthetic_orders": 52110,
                }
            ]
        }
    )
    since: datetime
    until: datetime
    orders: int = Field(description="real orders created in [since, until); synthetic ones excluded")
    revenue_cents: int = Field(description="the real orders' totals added up")
    synthetic_orders: int = Field(
        description="synthetic orders (smoke and load tests) in the window, not counted above"
    )
