"""Request and response models: validation of input and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

CART_ID_PATTERN = r"^[0-9a-f]{32}$"

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
    cart_id: str = Field(pattern=CART_ID_PATTERN)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)


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
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    price_cents: int | None = Field(default=None, ge=0)
    stock: int | None = Field(default=None, ge=0)
    category: str | None = Field(default=None, min_length=1, max_length=100)
