"""Payment callback route: the payment provider's signed events move an order's payment status, once per event id.

Also `webhooks`: the same callback described as an OpenAPI 3.1 webhook (what the provider sends).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from shop.api.deps import ServicesDep
from shop.api.responses import json_response
from shop.errors import LIMITS, ApiError, ErrorBody
from shop.payments import SECRET_VARIABLE, SIGNATURE_HEADER, verify
from shop.schemas import PaymentEvent, PaymentReceipt

router = APIRouter(prefix="/api/payments", tags=["payments"], responses=LIMITS)
webhooks = APIRouter()

SIGNATURE_DOC = (
    "`t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.<raw body>' keyed with the webhook secret>`; "
    "see the document's description for a worked example"
)
# Required, but checked by shop.payments.verify (401 invalid_signature, not a generic 422): the route takes
# it as optional and the document gets it from SIGNATURE_PARAMETER; the webhook (documentation only) requires it.
SIGNATURE_PARAMETER = {
    "name": SIGNATURE_HEADER,
    "in": "header",
    "required": True,
    "description": SIGNATURE_DOC,
    "schema": {"type": "string", "pattern": "^t=[0-9]{1,12}(,v1=[0-9a-f]{64})+$", "title": SIGNATURE_HEADER},
}

PAYMENT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON (`malformed_json`)"},
    401: {
        "model": ErrorBody,
        "description": "Signature missing, malformed or wrong (`invalid_signature`), or its timestamp more "
        "than 5 minutes from the shop's clock (`stale_signature`); nothing recorded",
    },
    422: {
        "model": ErrorBody,
        "description": "Not a payment event (`validation_error`: unknown `type`, missing field) or an unknown "
        "order (`unknown_order`); nothing recorded",
    },
    503: {
        "model": ErrorBody,
        "description": "The callback is not configured (`webhook_not_configured`), or a dependency is "
        "unavailable (`dependency_unavailable`); the provider should retry",
    },
}
# The body is read raw (the signature covers its exact bytes) and parsed after the check, so FastAPI
# does not declare it from a parameter: the document gets it here (the schema is the webhook's).
EVENT_BODY = {
    "parameters": [SIGNATURE_PARAMETER],
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PaymentEvent"}}},
    },
}


def _secret(request: Request) -> str:
    secret = request.app.state.settings.payment_webhook_secret
    if secret is None:
        raise ApiError(
            503,
            "webhook_not_configured",
            f"payment callbacks are not configured: set {SECRET_VARIABLE} (or {SECRET_VARIABLE}_FILE) "
            "to the provider's signing secret",
        )
    return secret.get_secret_value()


@router.post(
    "/webhook",
    response_model=PaymentReceipt,
    responses=PAYMENT_ERRORS,
    openapi_extra=EVENT_BODY,
    summary="Receive a payment provider's event",
)
async def payment_webhook(
    svc: ServicesDep,
    request: Request,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, include_in_schema=False)] = None,
) -> Response:
    """The payment provider's event for an order (`payment.paid`, `payment.failed`, `payment.refunded`),
    signed in `X-Shop-Signature`.

    The event and the order's new payment status are stored in one transaction. Idempotent by event id:
    a replay answers 200 with `duplicate: true` and changes nothing. An event that would move the status
    backwards (a failure after the payment, a refund of an unpaid order) is recorded, not applied.
    """
    secret = _secret(request)
    body = await request.body()
    verify(secret, signature, body, time.time())
    try:
        event = PaymentEvent.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    outcome = await svc.payments.apply(event.id, event.order_id, event.type, event.amount_cents, body)
    return json_response(outcome.doc(event.id, event.order_id))


@webhooks.post(
    "payment-event",
    response_model=PaymentReceipt,
    responses=PAYMENT_ERRORS,
    summary="A payment provider's event, sent to POST /api/payments/webhook",
    tags=["payments"],
    openapi_extra={"parameters": [SIGNATURE_PARAMETER]},
)
def payment_event(body: PaymentEvent) -> None:
    """What the payment provider sends to `POST /api/payments/webhook` when an order's payment changes:
    the event as JSON, signed in `X-Shop-Signature` (the document's description shows how). The shop
    answers 200 once the event is recorded (also for a replay); any other status means: send it again.
    """
