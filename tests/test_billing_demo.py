"""``flask demo``: every package purchase in the demo's ledger has its payment on /billing.

The demo's ledger and its billing records tell one story: each ``purchase`` row is keyed by a
checkout session (``checkout:<cs>``, as a real fulfilment writes it) whose payment the billing
page lists with the same date, package, amount and credits.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from portal.billing.cents import format_cents
from portal.billing.models import Payment
from portal.credits import organizations
from portal.credits.demo import DEMO_SLUG
from portal.demo import DEMO_LOGINS
from portal.extensions import db
from portal.money import format_credits
from tests.conftest import ledger_rows


def payment_rows(html: str) -> list[list[str]]:
    table = re.search(r'<table data-testid="payments">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert table, "no payments table on /billing"
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(1), re.S)
    return [
        [re.sub(r"<[^>]+>", " ", cell).split()[0] for cell in re.findall(r"<td[^>]*>(.*?)</td>", r)]
        for r in rows
    ]


def test_every_demo_purchase_has_its_payment_on_the_billing_page(runner, client):
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    demo = organizations.get_by_slug(DEMO_SLUG)
    purchases = [row for row in ledger_rows(demo.id) if row.kind == "purchase"]
    assert len(purchases) >= 2

    payments = {
        payment.checkout_session_id: payment
        for payment in db.session.scalars(select(Payment).where(Payment.organization_id == demo.id))
    }
    for row in purchases:
        session_id = row.source_ref.removeprefix("checkout:")
        payment = payments[session_id]
        assert (payment.status, payment.mode, payment.credits) == ("paid", "payment", row.amount)
        assert payment.package.lookup_key == row.meta["package"]
        assert payment.paid_at == payment.fulfilled_at == row.created_at
    assert len(payments) == len(purchases)
    db.session.rollback()

    email, password = next((e, p) for e, p, _, role in DEMO_LOGINS if role == "owner")
    assert client.post("/login", data={"email": email, "password": password}).status_code == 302
    listed = payment_rows(client.get("/billing").get_data(as_text=True))
    # Newest first, as the page lists them: date, package, amount, credits, status.
    expected = [
        [
            f"{row.created_at:%Y-%m-%d}",
            payments[row.source_ref.removeprefix("checkout:")].package.name,
            format_cents(payments[row.source_ref.removeprefix("checkout:")].amount_cents),
            format_credits(row.amount),
            "paid",
        ]
        for row in reversed(purchases)
    ]
    assert listed == expected


def test_running_the_demo_again_adds_no_payments(runner):
    assert runner.invoke(args=["demo"]).exit_code == 0
    count = len(db.session.scalars(select(Payment.id)).all())
    db.session.rollback()
    assert runner.invoke(args=["demo"]).exit_code == 0
    assert len(db.session.scalars(select(Payment.id)).all()) == count
