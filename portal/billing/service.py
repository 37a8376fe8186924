"""Buying and being paid: checkout, plan changes, the customer portal, Stripe's webhooks.

Buying grants nothing: credits arrive only when Stripe's webhook says the money did
(``receive_webhook``). Reads happen first, then the transaction is ended before any call to
Stripe (on SQLite an open transaction holds the write lock, and the sandbox serving those
calls writes too); what Stripe answered is then written and committed.

Webhooks are applied exactly once, by constraints rather than by checks that could race:

- ``stripe_events.event_id`` is unique and its row is inserted first, in the same transaction
  as everything the event changes. A redelivery (or a twin delivered at the same moment, which
  waits on the unique index until the first commits) finds the row and changes nothing.
- Credits go through the credits service (``grant``; ``clawback``, ``freeze``, ``unfreeze``
  for refunds and disputes) with a ``source_ref`` (``checkout:…``, ``invoice:…``,
  ``refund:…``, ``dispute:…``) that the ledger holds unique per kind, so two *different*
  events about the same payment still change the credits once. The event is one
  ``credits.transaction`` and the service calls join it (closing a plan period included), so
  the event row, the state it changed and the ledger rows land in one commit.
- Any failure rolls all of it back and answers 500, so Stripe's retry starts from scratch;
  but a signed event whose shape cannot be read answers 400 (and is logged), because no retry
  would make it readable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.billing import catalogue, fulfilment, gateway, outcomes, queries
from portal.billing.catalogue import Kind
from portal.billing.models import BillingCustomer, Payment, StripeEvent
from portal.billing.sync import sync_item
from portal.credits import service as credits
from portal.credits.models import Organization
from portal.errors import Conflict, InvalidRequest
from portal.extensions import db
from portal.timeutil import utcnow

SUCCESS_PATH = "billing/success?session_id={CHECKOUT_SESSION_ID}"
RETURN_PATH = "billing"
SWITCH_PATH = "billing/plans/{lookup_key}/switch"


class NothingToManage(Conflict):
    code = "no_billing_account"


@dataclass(frozen=True)
class Purchase:
    """What a manager chose on the billing page: one package or one plan, by lookup key."""

    organization_id: int
    user_id: int | None
    kind: Kind
    lookup_key: str

    @classmethod
    def from_form(
        cls, organization_id: int, user_id: int | None, form: Mapping[str, str]
    ) -> Purchase:
        package, plan = form.get("package", "").strip(), form.get("plan", "").strip()
        if bool(package) == bool(plan):
            raise InvalidRequest("package", "choose one package or one plan")
        kind: Kind = "package" if package else "plan"
        return cls(organization_id, user_id, kind, package or plan)


@dataclass(frozen=True)
class Next:
    """Where the browser goes next, and what to tell the user when it is back on our pages."""

    url: str
    message: str | None = None


def _end_transaction() -> None:
    db.session.rollback()


def start_checkout(purchase: Purchase) -> Next:
    """A Checkout Session for a package or a first plan; an existing plan is switched instead."""
    item = catalogue.find_for_sale(purchase.kind, purchase.lookup_key)
    if purchase.kind == "plan" and queries.live_subscription(purchase.organization_id):
        # Already subscribed: a switch is never one click; it is confirmed on its own page.
        return Next(gateway.base_url() + SWITCH_PATH.format(lookup_key=item.lookup_key))
    item_id, price_id = item.id, item.stripe_price_id
    credits, cents, currency = item.credits, item.price_cents, item.currency
    customer_id = _customer_id(purchase.organization_id)
    _end_transaction()
    if price_id is None:  # never synced, or re-priced since: mirror it in Stripe now
        price_id = sync_item(purchase.kind, item_id).price_id
    assert price_id is not None
    base = gateway.base_url()
    page = gateway.create_checkout_session(
        gateway.CheckoutRequest(
            mode="payment" if purchase.kind == "package" else "subscription",
            customer_id=customer_id,
            price_id=price_id,
            success_url=base + SUCCESS_PATH,
            cancel_url=base + RETURN_PATH,
            organization_id=purchase.organization_id,
            metadata={purchase.kind: purchase.lookup_key},
        )
    )
    db.session.add(
        Payment(
            organization_id=purchase.organization_id,
            user_id=purchase.user_id,
            checkout_session_id=page.id,
            mode="payment" if purchase.kind == "package" else "subscription",
            package_id=item_id if purchase.kind == "package" else None,
            plan_id=item_id if purchase.kind == "plan" else None,
            credits=credits,
            amount_cents=cents,
            currency=currency,
        )
    )
    db.session.commit()
    return Next(page.url)


def _customer_id(organization_id: int) -> str:
    """The organization's one Stripe customer, created (and remembered at once) on first use.

    Remembered in its own commit: the customer exists at Stripe whether or not this checkout
    is finished, and the next purchase must reuse it.
    """
    existing = db.session.scalar(
        select(BillingCustomer.stripe_customer_id).where(
            BillingCustomer.organization_id == organization_id
        )
    )
    if existing:
        return existing
    organization = db.session.get(Organization, organization_id)
    assert organization is not None
    name, created = organization.name, int(organization.created_at.timestamp())
    _end_transaction()
    customer_id = gateway.create_customer(organization_id, name, created)
    db.session.add(BillingCustomer(organization_id=organization_id, stripe_customer_id=customer_id))
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent first purchase remembered one first: use that one
        db.session.rollback()
        return db.session.scalar(
            select(BillingCustomer.stripe_customer_id).where(
                BillingCustomer.organization_id == organization_id
            )
        )
    return customer_id


def open_billing_portal(organization_id: int) -> Next:
    """A customer-portal session (payment methods, invoices, cancelling) for the organization."""
    customer_id = db.session.scalar(
        select(BillingCustomer.stripe_customer_id).where(
            BillingCustomer.organization_id == organization_id
        )
    )
    if customer_id is None:
        raise NothingToManage("Nothing to manage yet: buy a package or subscribe to a plan first.")
    _end_transaction()
    page = gateway.create_portal_session(customer_id, gateway.base_url() + RETURN_PATH)
    return Next(page.url)


# --- webhooks --------------------------------------------------------------------------------

ATTEMPTS = 3
MAX_BIGINT = 2**63 - 1


@dataclass(frozen=True)
class Receipt:
    event_id: str
    outcome: str


def receive_webhook(payload: bytes, signature: str | None) -> Receipt:
    """Verify a delivery, check it is an event we can read, and apply it once."""
    try:
        event = _well_formed(gateway.verify_webhook(payload, signature))
    except gateway.InvalidWebhook as exc:
        current_app.logger.warning("stripe webhook refused: %s", exc.message)
        raise
    return Receipt(event["id"], process_event(event))


def _malformed(why: str) -> gateway.InvalidWebhook:
    return gateway.InvalidWebhook(f"The body is not a Stripe event we can read: {why}.")


def _well_formed(body: Any) -> fulfilment.Event:
    """The fields every event needs, with the types the handlers and the columns expect."""
    if not isinstance(body, dict):
        raise _malformed("not a JSON object")
    for name, limit in (("id", 255), ("type", 100)):
        value = body.get(name)
        if not isinstance(value, str) or not value or len(value) > limit:
            raise _malformed(f"`{name}` must be a string of 1 to {limit} characters")
    created = body.get("created")
    if isinstance(created, bool) or not isinstance(created, int) or not 0 <= created <= MAX_BIGINT:
        raise _malformed("`created` must be a unix timestamp")
    data = body.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise _malformed("`data.object` must be an object")
    object_id = data["object"].get("id")
    if body["type"] in fulfilment.HANDLERS and not (
        isinstance(object_id, str) and 0 < len(object_id) <= 255
    ):
        raise _malformed("`data.object.id` must be a string")
    if not isinstance(body.get("livemode", False), bool):
        raise _malformed("`livemode` must be true or false")
    return body


def process_event(event: fulfilment.Event) -> str:
    """Apply an event once; returns what happened (also stored on its ``stripe_events`` row)."""
    received_at = utcnow()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _process_once(event, received_at)
        except (IntegrityError, credits.DuplicateGrant):
            # A concurrent event wrote the same row first (both were rolled back here): if it
            # was this very event, it is done; otherwise run again and see what it wrote.
            db.session.rollback()
            if _recorded(event["id"]):
                return "duplicate: already processed"
            if attempt == ATTEMPTS:
                raise
        except BaseException:
            db.session.rollback()
            raise
    raise AssertionError("unreachable")


def _recorded(event_id: str) -> bool:
    found = db.session.scalar(select(StripeEvent.id).where(StripeEvent.event_id == event_id))
    db.session.rollback()
    return found is not None


def _apply(event: fulfilment.Event) -> fulfilment.Outcome:
    """The handler's outcome; a nested field of a shape it cannot read is the sender's fault."""
    try:
        return fulfilment.apply(event)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        current_app.logger.exception(
            "stripe event %s (%s) is malformed", event["id"], event["type"]
        )
        raise _malformed(f"{type(exc).__name__} reading {event['type']}") from None


def _process_once(event: fulfilment.Event, received_at: datetime) -> str:
    with credits.transaction():
        return _record_and_apply(event, received_at)


def _record_and_apply(event: fulfilment.Event, received_at: datetime) -> str:
    record = StripeEvent(
        event_id=event["id"],
        type=event["type"],
        livemode=bool(event.get("livemode")),
        event_created=event["created"],
        received_at=received_at,
    )
    db.session.add(record)
    db.session.flush()  # first: a redelivery stops here (IntegrityError) before doing anything
    outcome = _apply(event)
    credit = outcome.credit
    note = outcome.note
    if credit is not None and credits.recorded(credit.kind, credit.source_ref):
        note = f"already granted ({credit.source_ref})"
        credit = None
    record.outcome = note[:255]
    record.processed_at = utcnow()
    if credit is not None:
        # Joins this event's transaction: one commit for the event row, its changes, credits.
        moved = _carry_out(credit, {"stripe_event": event["id"], **credit.metadata})
        if credit.applied is not None:
            credit.applied(moved)
    log = current_app.logger.warning if outcome.alert else current_app.logger.info
    credits.after_commit(lambda: log("stripe event %s (%s): %s", event["id"], event["type"], note))
    return note


def _carry_out(credit: outcomes.Credit, metadata: dict[str, Any]) -> int:
    """Make the event's change of credits; returns how many credits it moved."""
    org, ref, why = credit.organization_id, credit.source_ref, credit.description
    if credit.kind == "clawback":
        assert credit.grant_ref is not None
        clawed = credits.clawback(
            org, credit.grant_ref, credit.amount, source_ref=ref, description=why, metadata=metadata
        )
        return clawed.taken + clawed.forfeited
    if credit.kind in ("freeze", "unfreeze"):
        assert credit.grant_ref is not None
        verb = credits.freeze if credit.kind == "freeze" else credits.unfreeze
        return verb(org, credit.grant_ref, source_ref=ref, description=why, metadata=metadata)
    credits.grant(
        org,
        credit.amount,
        credit.kind,
        description=why,
        source_ref=ref,
        metadata=metadata,
        terms=credit.terms,
        allow_negative_balance=credit.allow_negative_balance,
    )
    return abs(credit.amount)
