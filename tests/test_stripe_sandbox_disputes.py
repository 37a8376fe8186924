"""Sandbox disputes and the refund command: card 4000 0000 0000 0259 pays and is then disputed.

Driven as in ``test_stripe_sandbox``: the real ``stripe`` library over HTTP against a live
server, hosted pages posted with httpx, webhooks verified by the test's own receiver, and the
``flask stripe`` commands through Flask's CLI runner.
"""

# The fixtures imported from test_stripe_sandbox are parameters here by design (pytest's way).
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import pytest
import stripe
from click.testing import Result

from tests.test_stripe_sandbox import (  # noqa: F401  (fixtures: pytest finds them by name)
    OK_CARD,
    Receiver,
    Sandbox,
    receiver,
    sandbox,
    worker_on,
)

DISPUTED_CARD = "4000 0000 0000 0259"


def cli(sandbox: Sandbox, *args: str) -> Result:
    return sandbox.app.test_cli_runner().invoke(args=["stripe", *args])


def _pay(sandbox: Sandbox, receiver: Receiver, price: Any, card: str, events: int) -> list[Any]:
    """Pay ``price`` on the hosted page; returns the ``events`` webhooks that payment sent."""
    before = len(receiver.events())
    _, paid = sandbox.checkout(price, card=card)
    assert paid.status_code == 303, paid.text
    return receiver.wait_for(before + events)[before:]


def _dispute(sandbox: Sandbox, receiver: Receiver, price: Any) -> Any:
    """A package paid with the disputing card: its ``charge.dispute.created`` dispute."""
    return _pay(sandbox, receiver, price, DISPUTED_CARD, 2)[1].data.object


def _closed(receiver: Receiver, count: int) -> Any:
    closed = receiver.wait_for(count)[-1]
    assert closed.type == "charge.dispute.closed"
    return closed.data.object


# --- opening ----------------------------------------------------------------------------------


def test_paying_with_0259_succeeds_then_opens_a_dispute(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    price = sandbox.price("package_small", 990)
    completed, created = _pay(sandbox, receiver, price, DISPUTED_CARD, 2)
    assert completed.type == "checkout.session.completed"
    assert created.type == "charge.dispute.created"
    assert completed.data.object.payment_status == "paid"
    assert created.created >= completed.created
    intent = sandbox.stripe.v1.payment_intents.retrieve(completed.data.object.payment_intent)
    assert intent.status == "succeeded"
    dispute = created.data.object
    assert dispute.id.startswith("dp_") and dispute.object == "dispute"
    assert (dispute.amount, dispute.currency) == (990, "usd")
    assert (dispute.charge, dispute.payment_intent) == (intent.latest_charge, intent.id)
    assert (dispute.reason, dispute.status) == ("fraudulent", "needs_response")
    assert dispute.is_charge_refundable is False and dispute.livemode is False
    assert dispute.metadata.to_dict() == {}
    assert dispute.evidence_details.due_by > dispute.created
    charge = sandbox.stripe.v1.charges.retrieve(intent.latest_charge)
    assert charge.paid is True and charge.disputed is True


def test_a_plan_paid_with_0259_is_disputed_at_checkout_and_at_each_renewal(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    plan = sandbox.price("plan_starter", 2900, monthly=True)
    events = _pay(sandbox, receiver, plan, DISPUTED_CARD, 4)
    assert [event.type for event in events] == [
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
        "charge.dispute.created",
    ]
    assert events[3].data.object.charge == events[1].data.object.charge
    sandbox.advance(31)
    renewal = receiver.wait_for(7)[4:]
    assert [event.type for event in renewal] == [
        "invoice.paid",
        "customer.subscription.updated",
        "charge.dispute.created",
    ]
    assert renewal[2].data.object.charge == renewal[0].data.object.charge
    assert renewal[2].data.object.amount == 2900


def test_other_cards_open_no_dispute(sandbox: Sandbox, receiver: Receiver) -> None:
    _pay(sandbox, receiver, sandbox.price("package_small", 990), OK_CARD, 1)
    assert receiver.types() == ["checkout.session.completed"]
    assert sandbox.stripe.v1.disputes.list().data == []


def test_the_hosted_page_lists_the_disputing_card(sandbox: Sandbox) -> None:
    session = sandbox.stripe.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"price": sandbox.price("package_small", 990).id}],
            "success_url": f"{sandbox.url}/billing/success",
        }
    )
    page = sandbox.http.get(session.url)
    assert "<strong>4000 0000 0000 0259</strong> pays, then is disputed" in page.text


# --- the API: retrieve, list, close (accept) -------------------------------------------------


def test_disputes_retrieve_list_and_close_through_the_library(
    sandbox: Sandbox, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stripe, "api_base", f"{sandbox.url}/_stripe")
    monkeypatch.setattr(stripe, "api_key", "sk_test_sandbox")
    price = sandbox.price("package_small", 990)
    first, second = _dispute(sandbox, receiver, price), _dispute(sandbox, receiver, price)
    assert stripe.Dispute.retrieve(first.id).to_dict() == first.to_dict()
    assert [d.id for d in stripe.Dispute.list().data] == [second.id, first.id]
    assert [d.id for d in stripe.Dispute.list(charge=first.charge).data] == [first.id]
    by_intent = stripe.Dispute.list(payment_intent=second.payment_intent)
    assert [d.id for d in by_intent.data] == [second.id]
    page = stripe.Dispute.list(limit=1)
    assert [d.id for d in page.data] == [second.id] and page.has_more

    accepted = stripe.Dispute.close(first.id)
    assert accepted.status == "lost"
    closed = _closed(receiver, 5)
    assert (closed.id, closed.status, closed.charge) == (first.id, "lost", first.charge)
    assert stripe.Dispute.retrieve(first.id).status == "lost"
    with pytest.raises(stripe.InvalidRequestError, match="already closed"):
        stripe.Dispute.close(first.id)
    with pytest.raises(stripe.InvalidRequestError, match="No such dispute: 'dp_missing'"):
        stripe.Dispute.retrieve("dp_missing")


def test_a_disputed_charge_cannot_be_refunded(sandbox: Sandbox, receiver: Receiver) -> None:
    dispute = _dispute(sandbox, receiver, sandbox.price("package_small", 990))
    with pytest.raises(stripe.InvalidRequestError, match="charged back") as refused:
        sandbox.stripe.v1.refunds.create(params={"payment_intent": dispute.payment_intent})
    assert refused.value.code == "charge_disputed"


# --- flask stripe dispute ---------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_dispute_close_emits_closed_with_the_outcome(
    sandbox: Sandbox, receiver: Receiver, outcome: str
) -> None:
    dispute = _dispute(sandbox, receiver, sandbox.price("package_small", 990))
    result = cli(sandbox, "dispute", "close", dispute.id, "--outcome", outcome)
    assert result.exit_code == 0, result.output
    assert f"Dispute {dispute.id} on {dispute.charge} ($9.90): {outcome}." in result.output
    closed = _closed(receiver, 3)
    assert (closed.id, closed.status, closed.amount) == (dispute.id, outcome, 990)
    assert sandbox.stripe.v1.disputes.retrieve(dispute.id).status == outcome


def test_dispute_close_without_an_id_takes_the_newest_open_one(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    price = sandbox.price("package_small", 990)
    older, newer = _dispute(sandbox, receiver, price), _dispute(sandbox, receiver, price)
    assert cli(sandbox, "dispute", "close", "--outcome", "won").exit_code == 0
    assert _closed(receiver, 5).id == newer.id
    assert cli(sandbox, "dispute", "close", "--outcome", "lost").exit_code == 0
    assert _closed(receiver, 6).id == older.id
    listed = cli(sandbox, "dispute", "list").output.splitlines()
    assert listed == [
        f"{newer.id}  {newer.charge}  {'won':<14}  $9.90",
        f"{older.id}  {older.charge}  {'lost':<14}  $9.90",
    ]


@pytest.mark.parametrize("worker_on", [False])
def test_dispute_close_deliver_sends_the_webhook_at_once(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    sandbox.checkout(sandbox.price("package_small", 990), card=DISPUTED_CARD)
    assert "2 delivered" in cli(sandbox, "deliver").output
    result = cli(sandbox, "dispute", "close", "--outcome", "won", "--deliver")
    assert "1 delivered" in result.output, result.output
    assert receiver.types()[-1] == "charge.dispute.closed"


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["--outcome", "won"], 1, "No open dispute"),
        (["{closed}", "--outcome", "won"], 1, "is already closed (status: lost)"),
        (["dp_missing", "--outcome", "lost"], 1, "No such dispute: 'dp_missing'"),
        (["{closed}"], 2, "Missing option '--outcome'"),
        (["--outcome", "draw"], 2, "Invalid value for '--outcome'"),
    ],
)
def test_dispute_close_errors(
    sandbox: Sandbox, receiver: Receiver, args: list[str], exit_code: int, message: str
) -> None:
    dispute = _dispute(sandbox, receiver, sandbox.price("package_small", 990))
    assert cli(sandbox, "dispute", "close", dispute.id, "--outcome", "lost").exit_code == 0
    result = cli(sandbox, "dispute", "close", *[a.format(closed=dispute.id) for a in args])
    assert result.exit_code == exit_code and message in result.output, result.output
    sent = [event.type for event in receiver.wait_for(3)]
    assert sent[1:] == ["charge.dispute.created", "charge.dispute.closed"]  # and nothing more


def test_dispute_list_when_there_are_none(sandbox: Sandbox) -> None:
    result = cli(sandbox, "dispute", "list")
    assert result.exit_code == 0 and result.output == "No disputes.\n"


# --- flask stripe refund ----------------------------------------------------------------------


def test_refund_partial_then_the_rest(sandbox: Sandbox, receiver: Receiver) -> None:
    completed = _pay(sandbox, receiver, sandbox.price("package_small", 990), OK_CARD, 1)[0]
    intent = completed.data.object.payment_intent
    partial = cli(sandbox, "refund", intent, "--amount", "490")
    assert partial.exit_code == 0 and "$4.90 of ch_" in partial.output, partial.output
    refunded = receiver.wait_for(2)[1]
    assert refunded.type == "charge.refunded" and refunded.data.object.payment_intent == intent
    assert refunded.data.object.amount_refunded == 490 and refunded.data.object.refunded is False
    assert refunded.data.previous_attributes.amount_refunded == 0
    rest = cli(sandbox, "refund", intent)
    assert rest.exit_code == 0 and "$5.00 of ch_" in rest.output, rest.output
    full = receiver.wait_for(3)[2].data.object
    assert full.amount_refunded == 990 and full.refunded is True
    assert [refund.amount for refund in full.refunds.data] == [500, 490]
    refund_id = rest.output.split()[1].rstrip(":")
    assert sandbox.stripe.v1.refunds.retrieve(refund_id).amount == 500


@pytest.mark.parametrize("worker_on", [False])
def test_refund_deliver_sends_the_webhook_at_once(sandbox: Sandbox, receiver: Receiver) -> None:
    sandbox.checkout(sandbox.price("package_small", 990))
    assert "1 delivered" in cli(sandbox, "deliver").output
    intent = receiver.events()[0].data.object.payment_intent
    assert "1 delivered" in cli(sandbox, "refund", intent, "--deliver").output
    assert receiver.types() == ["checkout.session.completed", "charge.refunded"]


@pytest.mark.parametrize(
    ("card", "args", "exit_code", "message"),
    [
        (OK_CARD, ["pi_missing"], 1, "No such payment intent: 'pi_missing'"),
        (OK_CARD, ["{intent}", "--amount", "991"], 1, "greater than unrefunded amount"),
        (OK_CARD, ["{intent}", "--amount", "0"], 2, "Invalid value for '--amount'"),
        (DISPUTED_CARD, ["{intent}"], 1, "has been charged back"),
    ],
)
def test_refund_errors(
    sandbox: Sandbox, receiver: Receiver, card: str, args: list[str], exit_code: int, message: str
) -> None:
    events = 2 if card == DISPUTED_CARD else 1
    intent = _pay(sandbox, receiver, sandbox.price("package_small", 990), card, events)[0]
    pi = intent.data.object.payment_intent
    result = cli(sandbox, "refund", *[a.format(intent=pi) for a in args])
    assert result.exit_code == exit_code and message in result.output, result.output
    assert (
        sandbox.stripe.v1.charges.retrieve(
            sandbox.stripe.v1.payment_intents.retrieve(pi).latest_charge
        ).amount_refunded
        == 0
    )
