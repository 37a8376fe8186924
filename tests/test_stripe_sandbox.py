"""The offline Stripe sandbox, driven as the portal drives Stripe: the real ``stripe`` library over
HTTP against a live server, hosted pages posted with httpx, and webhooks received by a tiny HTTP
server of the test's own, which checks their signatures with ``stripe.Webhook``.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import stripe
from flask import Flask
from sqlalchemy import select

from portal import create_app
from portal.extensions import db
from portal.stripe_sandbox import worker
from portal.stripe_sandbox.delivery import deliver_due
from portal.stripe_sandbox.models import SandboxDelivery
from tests.live import serve_in_thread

SECRET = "whsec_test_sandbox_secret"
OK_CARD, DECLINED_CARD = "4242 4242 4242 4242", "4000 0000 0000 0002"


@dataclass
class Receiver:
    """Records every webhook POST; answers 500 to the first ``failures`` of them."""

    url: str = ""
    failures: int = 0
    posts: list[tuple[str, str]] = field(default_factory=list)  # (payload, signature header)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[Any]:
        """Every accepted delivery, verified as the portal verifies it."""
        with self.lock:
            accepted = self.posts[self.failures :]
        return [stripe.Webhook.construct_event(body, sig, SECRET) for body, sig in accepted]

    def types(self) -> list[str]:
        return [event.type for event in self.events()]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if len(events) >= count:
                time.sleep(0.2)  # anything beyond ``count`` would show up now
                return self.events()
            time.sleep(0.02)
        raise AssertionError(f"expected {count} webhooks, got {self.types()}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recorder = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            with recorder.lock:
                recorder.posts.append((body, self.headers["Stripe-Signature"]))
                failing = len(recorder.posts) <= recorder.failures
            self.send_response(500 if failing else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_port}/stripe/webhook"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield recorder
    server.shutdown()


@dataclass
class Sandbox:
    url: str
    app: Flask
    stripe: stripe.StripeClient
    http: httpx.Client

    def price(self, lookup_key: str, amount: int, monthly: bool = False, **extra: Any) -> Any:
        product = self.stripe.v1.products.create(params={"name": lookup_key.title()})
        params: dict[str, Any] = {
            "product": product.id,
            "unit_amount": amount,
            "currency": "usd",
            "lookup_key": lookup_key,
            **extra,
        }
        if monthly:
            params["recurring"] = {"interval": "month"}
        return self.stripe.v1.prices.create(params=params)

    def checkout(self, price: Any, card: str = OK_CARD, **params: Any) -> tuple[Any, Any]:
        """Create a session for ``price`` and pay it on the hosted page: (session, response)."""
        customer = self.stripe.v1.customers.create(params={"email": "owner@example.com"})
        session = self.stripe.v1.checkout.sessions.create(
            params={
                "mode": "subscription" if price.recurring else "payment",
                "customer": customer.id,
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": f"{self.url}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
                "cancel_url": f"{self.url}/billing",
                **params,
            }
        )
        return session, self.http.post(session.url, data={"card_number": card})

    def advance(self, days: int, *flags: str) -> str:
        result = self.app.test_cli_runner().invoke(
            args=["stripe", "advance", "--days", str(days), *flags]
        )
        assert result.exit_code == 0, result.output
        return result.output


@pytest.fixture
def worker_on() -> bool:
    return True


@pytest.fixture
def sandbox(app: Flask, receiver: Receiver, worker_on: bool) -> Iterator[Sandbox]:
    assert "stripe_sandbox" in app.blueprints, "unset STRIPE_SECRET_KEY to test the sandbox"
    app.config.update(
        STRIPE_WEBHOOK_SECRET=SECRET,
        STRIPE_SANDBOX_WEBHOOK_URL=receiver.url,
        STRIPE_SANDBOX_WORKER=worker_on,
        STRIPE_SANDBOX_RETRY_SECONDS=0.05,
        STRIPE_SANDBOX_POLL_SECONDS=0.05,
    )
    with serve_in_thread(app, poll_interval=0.05) as url, httpx.Client(timeout=10) as http:
        client = stripe.StripeClient(
            "sk_test_sandbox", base_addresses={"api": f"{url}/_stripe"}, max_network_retries=0
        )
        yield Sandbox(url, app, client, http)
    worker.stop(app)


def deliveries() -> list[tuple[str, int, int | None]]:
    """(status, attempts, last HTTP status) per delivery, read without leaving a transaction
    open: on SQLite it would hold the write lock the server's threads need."""
    query = select(SandboxDelivery.status, SandboxDelivery.attempts, SandboxDelivery.last_status)
    rows = [tuple(row) for row in db.session.execute(query.order_by(SandboxDelivery.id))]
    db.session.rollback()
    return rows


# --- catalogue ------------------------------------------------------------------------------


def test_customers_products_and_prices_by_lookup_key(sandbox: Sandbox) -> None:
    api = sandbox.stripe.v1
    customer = api.customers.create(params={"email": "a@example.com", "metadata": {"org": "7"}})
    assert customer.id.startswith("cus_") and customer.livemode is False
    assert api.customers.retrieve(customer.id).metadata.to_dict() == {"org": "7"}

    starter = sandbox.price("plan_starter", 2900, monthly=True)
    small = sandbox.price("package_small", 990)
    assert starter.recurring.interval == "month" and starter.type == "recurring"
    assert small.type == "one_time" and small.unit_amount == 990

    found = api.prices.list(params={"lookup_keys": ["plan_starter", "package_small"]})
    assert {price.lookup_key for price in found.data} == {"plan_starter", "package_small"}
    assert api.prices.list(params={"lookup_keys": ["nope"]}).data == []

    with pytest.raises(stripe.InvalidRequestError, match="already uses that lookup key"):
        sandbox.price("plan_starter", 3900, monthly=True)
    moved = sandbox.price("plan_starter", 3900, monthly=True, transfer_lookup_key=True)
    assert api.prices.retrieve(starter.id).lookup_key is None
    only = api.prices.list(params={"lookup_keys": ["plan_starter"], "active": True}).data
    assert [price.id for price in only] == [moved.id]

    archived = api.prices.update(small.id, params={"active": False})
    assert archived.active is False
    assert api.prices.list(params={"active": False}).data[0].id == small.id
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter: unit_amount"):
        api.prices.update(moved.id, params={"unit_amount": 1})
    with pytest.raises(stripe.InvalidRequestError) as missing:
        api.customers.retrieve("cus_missing")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_lists_page_newest_first(sandbox: Sandbox) -> None:
    api = sandbox.stripe.v1
    made = [api.products.create(params={"name": f"P{n}"}).id for n in range(5)]
    first = api.products.list(params={"limit": 2})
    assert [p.id for p in first.data] == made[:-3:-1] and first.has_more
    rest = api.products.list(params={"limit": 10, "starting_after": first.data[-1].id})
    assert [p.id for p in rest.data] == made[2::-1] and not rest.has_more
    assert [p.id for p in api.products.list().auto_paging_iter()] == made[::-1]


def test_module_level_api_base(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """``stripe.api_base = <portal>/_stripe``, as the design doc promises any client."""
    monkeypatch.setattr(stripe, "api_base", f"{sandbox.url}/_stripe")
    monkeypatch.setattr(stripe, "api_key", "sk_test_sandbox")
    product = stripe.Product.create(name="Medium")
    stripe.Price.create(product=product.id, unit_amount=3990, currency="usd", lookup_key="m")
    assert stripe.Price.list(lookup_keys=["m"], expand=["data.product"]).data[0].product.name == (
        "Medium"
    )


def test_idempotency_key_replays_the_first_answer(sandbox: Sandbox) -> None:
    create = sandbox.stripe.v1.customers.create
    first = create(params={"email": "x@example.com"}, options={"idempotency_key": "org-1"})
    again = create(params={"email": "x@example.com"}, options={"idempotency_key": "org-1"})
    assert again.id == first.id
    assert len(sandbox.stripe.v1.customers.list().data) == 1
    with pytest.raises(stripe.IdempotencyError):
        create(params={"email": "y@example.com"}, options={"idempotency_key": "org-1"})


# --- checkout -------------------------------------------------------------------------------


def test_package_paid_with_4242_is_completed_and_delivered_signed(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    price = sandbox.price("package_small", 990)
    session, paid = sandbox.checkout(
        price,
        client_reference_id="org-7",
        metadata={"organization_id": "7"},
        payment_intent_data={"metadata": {"organization_id": "7"}},
    )
    assert session.url == f"{sandbox.url}/_stripe/checkout/{session.id}"
    assert session.status == "open" and session.payment_status == "unpaid"
    assert paid.status_code == 303
    assert paid.headers["location"] == f"{sandbox.url}/billing/success?session_id={session.id}"

    (event,) = receiver.wait_for(1)
    assert event.type == "checkout.session.completed"
    completed = event.data.object
    assert completed.id == session.id and completed.mode == "payment"
    assert completed.payment_status == "paid" and completed.amount_total == 990
    assert completed.client_reference_id == "org-7"
    assert completed.metadata.to_dict() == {"organization_id": "7"}
    intent = sandbox.stripe.v1.payment_intents.retrieve(completed.payment_intent)
    assert intent.status == "succeeded"
    assert intent.metadata.to_dict() == {"organization_id": "7"}
    expanded = sandbox.stripe.v1.checkout.sessions.retrieve(
        session.id, params={"expand": ["line_items"]}
    )
    assert expanded.line_items.data[0].price.lookup_key == "package_small"

    again = sandbox.http.post(session.url, data={"card_number": OK_CARD})
    assert again.status_code == 303  # a second click redirects and pays nothing more
    time.sleep(0.3)
    assert len(receiver.events()) == 1


def test_hosted_checkout_page_has_the_form(sandbox: Sandbox) -> None:
    price = sandbox.price("package_small", 990)
    customer = sandbox.stripe.v1.customers.create()
    session = sandbox.stripe.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer.id,
            "line_items": [{"price": price.id, "quantity": 2}],
            "success_url": f"{sandbox.url}/billing/success",
            "cancel_url": f"{sandbox.url}/billing",
        }
    )
    page = sandbox.http.get(session.url)
    assert page.status_code == 200
    assert 'name="card_number"' in page.text and "Pay $19.80" in page.text
    assert f'href="{sandbox.url}/billing"' in page.text


def test_declined_card_records_nothing(sandbox: Sandbox, receiver: Receiver) -> None:
    price = sandbox.price("package_small", 990)
    session, declined = sandbox.checkout(price, card=DECLINED_CARD)
    assert declined.status_code == 402 and "Your card was declined." in declined.text
    assert sandbox.stripe.v1.checkout.sessions.retrieve(session.id).status == "open"
    assert sandbox.stripe.v1.events.list().data == []
    time.sleep(0.3)
    assert receiver.posts == []

    paid = sandbox.http.post(session.url, data={"card_number": OK_CARD})
    assert paid.status_code == 303
    assert receiver.wait_for(1)[0].type == "checkout.session.completed"


def test_subscription_checkout_emits_in_stripe_order(sandbox: Sandbox, receiver: Receiver) -> None:
    price = sandbox.price("plan_starter", 2900, monthly=True)
    _, paid = sandbox.checkout(price, subscription_data={"metadata": {"org": "7"}})
    assert paid.status_code == 303
    created, invoice_paid, completed = receiver.wait_for(3)
    assert [created.type, invoice_paid.type, completed.type] == [
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
    ]
    subscription = created.data.object
    assert subscription.status == "active" and subscription.metadata.to_dict() == {"org": "7"}
    assert subscription["items"].data[0].price.lookup_key == "plan_starter"
    assert subscription.current_period_end > subscription.current_period_start

    invoice = invoice_paid.data.object
    assert invoice.billing_reason == "subscription_create" and invoice.status == "paid"
    assert invoice.amount_paid == 2900 and invoice.subscription == subscription.id
    assert invoice.number.endswith("-0001")
    line = invoice.lines.data[0]
    assert line.price.lookup_key == "plan_starter"
    assert (line.period.start, line.period.end) == (invoice.period_start, invoice.period_end)
    assert completed.data.object.mode == "subscription"
    assert completed.data.object.subscription == subscription.id

    page = sandbox.http.get(invoice.hosted_invoice_url)
    assert page.status_code == 200 and invoice.number in page.text
    pdf = sandbox.http.get(invoice.invoice_pdf)
    assert pdf.headers["content-type"] == "application/pdf"
    assert_valid_pdf(pdf.content)


def assert_valid_pdf(content: bytes) -> None:
    """Header, trailer, and an xref table whose every offset lands on its object."""
    assert content.startswith(b"%PDF-1.4") and content.rstrip().endswith(b"%%EOF")
    xref = int(content.rsplit(b"startxref", 1)[1].split()[0])
    assert content[xref:].startswith(b"xref")
    entries = content[xref:].split(b"\n")[3:]
    offsets = [int(line[:10]) for line in entries if line.endswith(b" n ")]
    assert offsets and all(
        content[offset:].startswith(b"%d 0 obj" % number)
        for number, offset in enumerate(offsets, start=1)
    )


# --- webhook delivery -----------------------------------------------------------------------


def test_a_500_is_retried_until_delivered(sandbox: Sandbox, receiver: Receiver) -> None:
    receiver.failures = 2
    sandbox.checkout(sandbox.price("package_small", 990))
    (event,) = receiver.wait_for(1)
    assert len(receiver.posts) == 3
    for body, signature in receiver.posts:  # every attempt is signed afresh, all valid
        assert stripe.Webhook.construct_event(body, signature, SECRET).id == event.id
    assert deliveries() == [("delivered", 3, 200)]


@pytest.mark.parametrize("worker_on", [False])
def test_concurrent_drains_deliver_each_event_once(
    sandbox: Sandbox, receiver: Receiver, database_url: str
) -> None:
    """Two "processes" (apps) with four threads each drain one outbox: no event twice."""
    for _ in range(4):
        sandbox.checkout(sandbox.price(f"package_{_}", 990))
    assert len(deliveries()) == 4 and receiver.posts == []
    config = {"SQLALCHEMY_DATABASE_URI": database_url, "STRIPE_WEBHOOK_SECRET": SECRET}
    apps = [create_app({**config, "STRIPE_SANDBOX_WEBHOOK_URL": receiver.url}) for _ in "ab"]
    start = threading.Barrier(8)

    def drain(app: Flask) -> None:
        with app.app_context():
            start.wait()
            deliver_due()
            db.session.remove()

    threads = [threading.Thread(target=drain, args=(a,)) for a in apps for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for app in apps:
        with app.app_context():
            db.engine.dispose()
    ids = [event.id for event in receiver.events()]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert {status for status, _, _ in deliveries()} == {"delivered"}


@pytest.mark.parametrize("worker_on", [False])
def test_the_cli_delivers_when_no_worker_runs(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.checkout(sandbox.price("plan_starter", 2900, monthly=True))
    assert receiver.posts == []
    result = sandbox.app.test_cli_runner().invoke(args=["stripe", "deliver"])
    assert "3 delivered" in result.output, result.output
    assert "2 delivered" in sandbox.advance(31, "--deliver")
    assert receiver.types() == [
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
        "invoice.paid",
        "customer.subscription.updated",
    ]


# --- the clock, the customer portal, refunds ------------------------------------------------


def _subscribe(sandbox: Sandbox, receiver: Receiver) -> Any:
    sandbox.checkout(sandbox.price("plan_starter", 2900, monthly=True))
    return receiver.wait_for(3)[0].data.object


def test_advancing_the_clock_renews(sandbox: Sandbox, receiver: Receiver) -> None:
    subscription = _subscribe(sandbox, receiver)
    assert "1 renewal(s)" in sandbox.advance(31)
    paid, updated = receiver.wait_for(5)[3:]
    assert paid.type == "invoice.paid" and paid.data.object.billing_reason == "subscription_cycle"
    assert paid.data.object.number.endswith("-0002") and paid.data.object.amount_paid == 2900
    assert paid.data.object.period_start == subscription.current_period_end
    assert updated.type == "customer.subscription.updated"
    assert updated.data.object.current_period_start == subscription.current_period_end
    assert updated.data.previous_attributes.current_period_end == subscription.current_period_end
    invoices = sandbox.stripe.v1.invoices.list(params={"customer": subscription.customer})
    assert len(invoices.data) == 2


def _portal(sandbox: Sandbox, customer: str) -> str:
    session = sandbox.stripe.v1.billing_portal.sessions.create(
        params={"customer": customer, "return_url": f"{sandbox.url}/billing"}
    )
    assert session.url == f"{sandbox.url}/_stripe/portal/{session.id}"
    return session.url


def test_cancel_at_period_end_in_the_portal_ends_without_renewal(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    subscription = _subscribe(sandbox, receiver)
    portal = _portal(sandbox, subscription.customer)
    page = sandbox.http.get(portal)
    assert "Cancel at period end" in page.text and "Cancel now" in page.text
    done = sandbox.http.post(
        portal, data={"action": "cancel_at_period_end", "subscription": subscription.id}
    )
    assert done.status_code == 303
    updated = receiver.wait_for(4)[3]
    assert updated.type == "customer.subscription.updated"
    assert updated.data.object.cancel_at_period_end is True
    assert updated.data.previous_attributes.cancel_at_period_end is False

    sandbox.advance(40)
    deleted = receiver.wait_for(5)[4]
    assert deleted.type == "customer.subscription.deleted"
    assert deleted.data.object.status == "canceled"
    sandbox.advance(40)
    time.sleep(0.3)
    assert receiver.types().count("invoice.paid") == 1


def test_cancel_now_in_the_portal(sandbox: Sandbox, receiver: Receiver) -> None:
    subscription = _subscribe(sandbox, receiver)
    portal = _portal(sandbox, subscription.customer)
    sandbox.http.post(portal, data={"action": "cancel_now", "subscription": subscription.id})
    deleted = receiver.wait_for(4)[3]
    assert deleted.type == "customer.subscription.deleted"
    assert sandbox.stripe.v1.subscriptions.retrieve(subscription.id).status == "canceled"


def test_switch_plan_in_the_portal_bills_the_new_price_at_renewal(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    subscription = _subscribe(sandbox, receiver)
    professional = sandbox.price("plan_professional", 9900, monthly=True)
    portal = _portal(sandbox, subscription.customer)
    assert "Switch to Plan_Professional" in sandbox.http.get(portal).text
    sandbox.http.post(
        portal,
        data={"action": "switch", "subscription": subscription.id, "price": professional.id},
    )
    switched = receiver.wait_for(4)[3]
    assert switched.type == "customer.subscription.updated"
    assert switched.data.object["items"].data[0].price.lookup_key == "plan_professional"
    assert switched.data.previous_attributes["items"].data[0].price.id != professional.id
    sandbox.advance(31)
    renewal = receiver.wait_for(6)[4].data.object
    assert renewal.amount_paid == 9900
    assert renewal.lines.data[0].price.lookup_key == "plan_professional"


def test_api_switch_and_cancel(sandbox: Sandbox, receiver: Receiver) -> None:
    subscription = _subscribe(sandbox, receiver)
    professional = sandbox.price("plan_professional", 9900, monthly=True)
    item = subscription["items"].data[0].id
    api = sandbox.stripe.v1.subscriptions
    changed = api.update(
        subscription.id,
        params={"items": [{"id": item, "price": professional.id}], "proration_behavior": "none"},
    )
    assert changed["items"].data[0].price.id == professional.id
    assert api.update(subscription.id, params={"cancel_at_period_end": True}).cancel_at is not None
    assert api.cancel(subscription.id).status == "canceled"
    assert receiver.wait_for(6)[3:] and receiver.types()[3:] == [
        "customer.subscription.updated",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ]


def test_failed_renewal_is_past_due_until_paid_on_the_invoice_page(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    _subscribe(sandbox, receiver)
    sandbox.advance(31, "--fail-payment")
    failed, past_due = receiver.wait_for(5)[3:]
    assert failed.type == "invoice.payment_failed" and failed.data.object.status == "open"
    assert past_due.data.object.status == "past_due"
    invoice = failed.data.object
    assert 'name="card_number"' in sandbox.http.get(invoice.hosted_invoice_url).text
    paid = sandbox.http.post(invoice.hosted_invoice_url, data={"card_number": OK_CARD})
    assert paid.status_code == 303
    recovered = receiver.wait_for(7)[5:]
    assert [event.type for event in recovered] == [
        "invoice.paid",
        "customer.subscription.updated",
    ]
    assert recovered[0].data.object.id == invoice.id
    assert recovered[1].data.object.status == "active"


def test_refunds_emit_charge_refunded(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.checkout(sandbox.price("package_small", 990))
    intent = receiver.wait_for(1)[0].data.object.payment_intent
    partial = sandbox.stripe.v1.refunds.create(params={"payment_intent": intent, "amount": 490})
    charge = receiver.wait_for(2)[1].data.object
    assert charge.payment_intent == intent and charge.amount_refunded == 490
    assert charge.refunded is False and charge.refunds.data[0].id == partial.id
    sandbox.stripe.v1.refunds.create(params={"payment_intent": intent})
    charge = receiver.wait_for(3)[2].data.object
    assert charge.amount_refunded == 990 and charge.refunded is True
    assert len(charge.refunds.data) == 2
    with pytest.raises(stripe.InvalidRequestError, match="already been refunded"):
        sandbox.stripe.v1.refunds.create(params={"charge": charge.id})


# --- refusals -------------------------------------------------------------------------------


def test_live_and_missing_keys_are_refused(sandbox: Sandbox) -> None:
    live = stripe.StripeClient(
        "sk_live_123", base_addresses={"api": f"{sandbox.url}/_stripe"}, max_network_retries=0
    )
    with pytest.raises(stripe.AuthenticationError, match="refuses live keys"):
        live.v1.customers.create()
    assert sandbox.http.get(f"{sandbox.url}/_stripe/v1/customers").status_code == 401


@pytest.mark.parametrize(
    "config",
    [
        {"STRIPE_SANDBOX": "1", "STRIPE_SECRET_KEY": "sk_live_123"},
        {"PORTAL_ENV": "production", "STRIPE_SECRET_KEY": None},
    ],
)
def test_the_sandbox_will_not_start_unsafely(database_url: str, config: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="sandbox"):
        create_app({"SQLALCHEMY_DATABASE_URI": database_url, **config})


def test_a_real_key_means_no_sandbox(database_url: str) -> None:
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "STRIPE_SECRET_KEY": "sk_test_1"})
    assert "stripe_sandbox" not in app.blueprints


def test_unknown_parameters_and_paths_are_refused(sandbox: Sandbox) -> None:
    price = sandbox.price("package_small", 990)
    with pytest.raises(stripe.InvalidRequestError, match="unknown parameter: allow_promotion"):
        sandbox.stripe.v1.checkout.sessions.create(
            params={
                "mode": "payment",
                "line_items": [{"price": price.id, "quantity": 1}],
                "success_url": f"{sandbox.url}/billing/success",
                "allow_promotion_codes": True,
            }
        )
    with pytest.raises(stripe.InvalidRequestError, match="recurring price"):
        sandbox.checkout(price, mode="subscription")
    missing = sandbox.http.get(
        f"{sandbox.url}/_stripe/v1/coupons", headers={"Authorization": "Bearer sk_test_x"}
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "headers", [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}]
)
def test_cross_site_form_posts_are_refused(
    sandbox: Sandbox, receiver: Receiver, headers: dict[str, str]
) -> None:
    price = sandbox.price("package_small", 990)
    customer = sandbox.stripe.v1.customers.create()
    session = sandbox.stripe.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "customer": customer.id,
            "line_items": [{"price": price.id}],
            "success_url": f"{sandbox.url}/billing/success",
        }
    )
    refused = sandbox.http.post(session.url, data={"card_number": OK_CARD}, headers=headers)
    assert refused.status_code == 403
    assert sandbox.stripe.v1.checkout.sessions.retrieve(session.id).status == "open"
