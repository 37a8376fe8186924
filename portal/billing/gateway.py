"""The only module that talks to Stripe (and the only one that imports ``stripe``).

With ``STRIPE_SECRET_KEY`` set, calls go to Stripe. Unset, they go to the offline sandbox the
portal serves at ``/_stripe``: the same library, the same requests, another base URL. Each call
builds (or reuses) a ``StripeClient`` for the key and base it needs rather than setting
``stripe.api_key`` / ``stripe.api_base`` globally, so two apps in one process (tests, a worker)
cannot see each other's settings.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import stripe
from flask import current_app, has_request_context, request

from portal.errors import PortalError

SANDBOX_API_KEY = "sk_test_sandbox"
SANDBOX_PATH = "_stripe"
CLI_BASE_URL = "http://127.0.0.1:5000/"  # ``flask run``'s default, for commands without a request


class GatewayError(PortalError):
    """Stripe (or the sandbox) refused or could not be reached; nothing was bought."""

    status = 502
    code = "payment_provider_error"


class InvalidWebhook(PortalError):
    """A webhook whose signature, timestamp or body does not verify: it is not from Stripe."""

    status = 400
    code = "invalid_webhook"


class WebhookNotConfigured(PortalError):
    """No signing secret: answer 5xx, so Stripe retries once the secret is configured."""

    status = 500
    code = "webhook_not_configured"


def sandbox_mode() -> bool:
    """No ``STRIPE_SECRET_KEY`` (or ``STRIPE_SANDBOX=1``): the sandbox's own rule, asked once."""
    from portal.stripe_sandbox import sandbox_enabled

    return sandbox_enabled(current_app.config)


def base_url() -> str:
    """The portal's own public address, ending in ``/``: for redirects back and the sandbox."""
    configured = current_app.config.get("PORTAL_BASE_URL")
    if configured:
        return configured.rstrip("/") + "/"
    return request.host_url if has_request_context() else CLI_BASE_URL


@lru_cache(maxsize=8)
def _client_for(api_key: str, api_base: str | None) -> stripe.StripeClient:
    addresses: dict[str, Any] = {"api": api_base} if api_base else {}
    return stripe.StripeClient(
        api_key,
        base_addresses=addresses,  # type: ignore[arg-type]
        http_client=stripe.RequestsClient(timeout=30),
        max_network_retries=2,
    )


def _client() -> stripe.StripeClient:
    if sandbox_mode():
        return _client_for(SANDBOX_API_KEY, base_url() + SANDBOX_PATH)
    return _client_for(current_app.config["STRIPE_SECRET_KEY"], None)


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _fail(action: str, exc: stripe.StripeError) -> GatewayError:
    current_app.logger.warning("stripe: %s failed: %s", action, exc)
    message = getattr(exc, "user_message", None) or str(exc) or "no answer"
    return GatewayError(f"The payment provider could not {action}: {message}")


def _missing(exc: stripe.StripeError) -> bool:
    return isinstance(exc, stripe.InvalidRequestError) and exc.http_status == 404


# --- customers and checkout ------------------------------------------------------------------


def create_customer(organization_id: int, name: str, created: int) -> str:
    """A Stripe customer for an organization. The idempotency key makes a racing twin get the
    same customer back; ``created`` (the organization's creation time) keeps a rebuilt database's
    new organization with a recycled id from colliding with an old key."""
    try:
        customer = _client().v1.customers.create(
            params={"name": name, "metadata": {"organization_id": str(organization_id)}},
            options={"idempotency_key": f"portal-customer-{organization_id}-{created}"},
        )
    except stripe.StripeError as exc:
        raise _fail("create a customer", exc) from exc
    return customer.id


@dataclass(frozen=True)
class CheckoutRequest:
    mode: str  # "payment" (a package) or "subscription" (a plan)
    customer_id: str
    price_id: str
    success_url: str
    cancel_url: str
    organization_id: int
    metadata: dict[str, str]


@dataclass(frozen=True)
class HostedPage:
    id: str
    url: str


def create_checkout_session(spec: CheckoutRequest) -> HostedPage:
    metadata = {"organization_id": str(spec.organization_id), **spec.metadata}
    params: dict[str, Any] = {
        "mode": spec.mode,
        "customer": spec.customer_id,
        "line_items": [{"price": spec.price_id, "quantity": 1}],
        "success_url": spec.success_url,
        "cancel_url": spec.cancel_url,
        "client_reference_id": str(spec.organization_id),
        "metadata": metadata,
    }
    # Copied onto the objects the later events are about, so each event names its organization.
    if spec.mode == "subscription":
        params["subscription_data"] = {"metadata": metadata}
    else:
        params["payment_intent_data"] = {"metadata": metadata}
    try:
        session = _client().v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        raise _fail("start a checkout", exc) from exc
    return HostedPage(session.id, session.url)


def create_portal_session(customer_id: str, return_url: str) -> HostedPage:
    try:
        session = _client().v1.billing_portal.sessions.create(
            params={"customer": customer_id, "return_url": return_url}
        )
    except stripe.StripeError as exc:
        raise _fail("open the billing portal", exc) from exc
    return HostedPage(session.id, session.url)


def retrieve_subscription(subscription_id: str) -> dict[str, Any]:
    try:
        return _plain(_client().v1.subscriptions.retrieve(subscription_id))
    except stripe.StripeError as exc:
        raise _fail("load the subscription", exc) from exc


def switch_subscription_price(
    subscription_id: str, item_id: str, price_id: str, *, resume: bool = False
) -> None:
    """Move a subscription to another price, billed from its next period (no proration);
    ``resume`` also withdraws a pending cancellation, which is otherwise left alone."""
    params: dict[str, Any] = {
        "items": [{"id": item_id, "price": price_id}],
        "proration_behavior": "none",
    }
    if resume:
        params["cancel_at_period_end"] = False
    try:
        _client().v1.subscriptions.update(subscription_id, params=params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        raise _fail("change the plan", exc) from exc


# --- catalogue sync --------------------------------------------------------------------------


@dataclass(frozen=True)
class StripePrice:
    id: str
    product_id: str
    unit_amount: int | None
    currency: str
    interval: str | None
    active: bool


def find_price(lookup_key: str) -> StripePrice | None:
    """The price that holds ``lookup_key`` now (lookup keys are unique across prices)."""
    try:
        found = _client().v1.prices.list(params={"lookup_keys": [lookup_key], "limit": 1})
    except stripe.StripeError as exc:
        raise _fail("list prices", exc) from exc
    for listed in found.data:
        price = _plain(listed)
        product = price["product"]
        recurring = price.get("recurring")
        return StripePrice(
            price["id"],
            product if isinstance(product, str) else product["id"],
            price.get("unit_amount"),
            price["currency"],
            recurring.get("interval") if recurring else None,
            bool(price.get("active")),
        )
    return None


def save_product(
    product_id: str | None, name: str, description: str | None, active: bool, lookup_key: str
) -> str:
    """Create the product, or update it in place; a product Stripe lost is made again."""
    params: dict[str, Any] = {
        "name": name,
        "active": active,
        "metadata": {"lookup_key": lookup_key},
    }
    if description:
        params["description"] = description
    client = _client()
    try:
        if product_id:
            try:
                return client.v1.products.update(product_id, params=params).id  # type: ignore[arg-type]
            except stripe.StripeError as exc:
                if not _missing(exc):
                    raise
        return client.v1.products.create(params=params).id  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        raise _fail("save a product", exc) from exc


def create_price(
    product_id: str, lookup_key: str, cents: int, currency: str, interval: str | None
) -> str:
    """A new price that takes ``lookup_key`` over from any older price (prices are immutable)."""
    params: dict[str, Any] = {
        "product": product_id,
        "unit_amount": cents,
        "currency": currency,
        "lookup_key": lookup_key,
        "transfer_lookup_key": True,
        "metadata": {"lookup_key": lookup_key},
    }
    if interval:
        params["recurring"] = {"interval": interval}
    try:
        return _client().v1.prices.create(params=params).id  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        raise _fail("create a price", exc) from exc


def set_price_active(price_id: str, active: bool) -> None:
    try:
        _client().v1.prices.update(price_id, params={"active": active})
    except stripe.StripeError as exc:
        raise _fail("update a price", exc) from exc


# --- webhooks --------------------------------------------------------------------------------


# Stripe's own default tolerance; ``stripe`` checks only the past side of it.
WEBHOOK_TOLERANCE = 300


def verify_webhook(payload: bytes, signature: str | None) -> Any:
    """Check Stripe's signature on the raw body; return the body as parsed JSON (any shape).

    ``stripe.WebhookSignature.verify_header`` refuses a timestamp older than the tolerance but
    not one from the future: a signed request dated ahead could be replayed until that date,
    so a timestamp more than the tolerance ahead is refused here like a stale one. The body is
    parsed here rather than by ``construct_event``, which fails with a 500 on a signed body
    that is JSON but not an object; the caller checks the event's shape.
    """
    secret = current_app.config.get("STRIPE_WEBHOOK_SECRET")
    if not secret:
        raise WebhookNotConfigured("STRIPE_WEBHOOK_SECRET is not set.")
    try:
        text = payload.decode("utf-8")
        stripe.WebhookSignature.verify_header(text, signature, secret, WEBHOOK_TOLERANCE)
    except UnicodeDecodeError:
        raise InvalidWebhook("The body is not UTF-8 text.") from None
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(f"Signature check failed: {exc.user_message or exc}") from None
    if _signed_at(signature or "") > time.time() + WEBHOOK_TOLERANCE:
        raise InvalidWebhook("Signature check failed: the timestamp is in the future.")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidWebhook("The body is not a JSON event.") from None
    if not _storable(body):
        raise InvalidWebhook("The body is not a Stripe event: it holds a NUL or lone surrogate.")
    return body


def _storable(body: Any) -> bool:
    """No string a database column could refuse (NUL, a lone surrogate ``\\ud800``)."""
    pending = [body]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                return False
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return False
    return True


def _signed_at(header: str) -> int:
    """The timestamp ``stripe`` verified: the first ``t=`` item, read exactly as it reads it
    (``WebhookSignature._get_timestamp_and_signatures``), so no other ``t`` can stand in."""
    items = [item.split("=", 2) for item in header.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))
