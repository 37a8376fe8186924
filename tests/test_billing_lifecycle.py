"""Plan periods and package validity: renewals through the sandbox's test clock, rollover,
cancellation, packages that expire, the rules stated on /billing, and the admin's form.

Flows run against a live server and the offline Stripe sandbox (``tests.test_billing_pages``):
the real ``stripe`` library, the hosted checkout page, ``flask stripe advance --days 31`` and
``flask stripe deliver``; the credits are read back from the grants and the ledger.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from portal.billing.gateway import SANDBOX_API_KEY
from portal.billing.models import Package, Payment, Plan, Subscription
from portal.credits.models import CreditGrant
from portal.extensions import db
from tests import test_billing_pages as pages
from tests.conftest import balance_row, credits, ledger_rows
from tests.test_billing_admin import find
from tests.test_billing_pages import GOOD_CARD, OWNER, Browser, deliver, pay, scalar, text_of

live, shop = pages.live, pages.shop  # the live server and the shop, as the page tests build them
GRACE = timedelta(hours=72)  # PORTAL_PLAN_RENEWAL_GRACE_HOURS


class Shop:
    """The shop's owner buying through the sandbox, its clock, and what the ledger then holds."""

    def __init__(self, live_url: str, org, runner, api) -> None:
        self.org, self.runner, self.api = org, runner, api
        self.browser = Browser(live_url, OWNER)
        self.stripe = httpx.Client(
            base_url=f"{live_url}/_stripe/v1",
            headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
            timeout=60,
        )

    def buy(self, card: str = GOOD_CARD, **item: str) -> str:
        """Check out ``package=…`` or ``plan=…`` and deliver the webhooks; the session id."""
        location = self.browser.post("/billing/checkout", **item).headers["location"]
        assert pay(location, card).status_code == 303
        deliver(self.runner)
        return pages.session_id_of(location)

    def stripe_cli(self, *args: str) -> str:
        result = self.runner.invoke(args=["stripe", *args])
        assert result.exit_code == 0, result.output
        return result.output

    def advance(self, days: int = 31) -> None:
        self.stripe_cli("advance", "--days", str(days))
        deliver(self.runner)

    def spend(self, amount: int) -> None:
        spent = self.api.post(
            "/credits/deduct", self.org, json={"feature_key": "render", "quantity": amount}
        )
        assert spent.status_code == 201, spent.json

    def balance(self) -> int:
        return balance_row(self.org.id)[0]

    def kinds(self) -> list[tuple[str, int]]:
        return [(row.kind, row.amount) for row in ledger_rows(self.org.id)]

    def grants(self) -> list[CreditGrant]:
        db.session.expire_all()
        found = list(
            db.session.scalars(
                select(CreditGrant)
                .where(CreditGrant.organization_id == self.org.id)
                .order_by(CreditGrant.id)
            )
        )
        for grant in found:
            db.session.expunge(grant)
        db.session.rollback()
        return found

    def subscription(self) -> Subscription:
        db.session.expire_all()
        row = db.session.scalar(
            select(Subscription).where(Subscription.organization_id == self.org.id)
        )
        db.session.expunge(row)
        db.session.rollback()
        return row


@pytest.fixture
def store(live, shop, runner, api, make_price):
    make_price("render", 1)
    return Shop(live, shop, runner, api)


def set_terms(model, key: str, **terms) -> None:
    db.session.execute(update(model).where(model.lookup_key == key).values(**terms))
    db.session.commit()


# --- renewals --------------------------------------------------------------------------------


def test_a_renewal_expires_the_old_periods_unused_credits_and_grants_the_new_ones(store):
    store.buy(plan="plan_starter")  # 500 a period, rollover "none" (the default)
    first_end = store.subscription().current_period_end
    (first,) = store.grants()
    assert (first.kind, first.subscription_ref, first.period_end) == (
        "subscription",
        store.subscription().stripe_subscription_id,
        first_end,
    )
    assert first.expires_at == first_end  # the backstop: the period's end
    store.spend(120)

    store.advance(31)
    assert [kind for kind in store.kinds() if kind[0] == "expire"] == [("expire", -credits(380))]
    old, new = store.grants()
    assert (old.remaining, old.expired, old.consumed) == (0, credits(380), credits(120))
    assert (new.amount, new.period_start, new.expires_at) == (
        credits(500),
        first_end,
        store.subscription().current_period_end,
    )
    assert store.balance() == credits(500)
    store.advance(0)  # nothing due: redelivering nothing, expiring nothing more
    assert len([kind for kind in store.kinds() if kind[0] == "expire"]) == 1


def test_capped_rollover_carries_up_to_the_cap_for_one_more_period(store):
    set_terms(Plan, "plan_starter", rollover="capped", rollover_cap=credits(150))
    store.buy(plan="plan_starter")
    store.spend(100)  # 400 unused at the renewal
    store.advance(31)
    first, _ = store.grants()
    assert (first.remaining, first.expired, first.carryovers) == (credits(150), credits(250), 1)
    assert first.expires_at == store.subscription().current_period_end + GRACE
    assert store.balance() == credits(650)

    store.spend(150 + 50)  # the carried credits burn first (the same expiry, older), then 50 new
    store.advance(31)  # the carried ones are gone; of the second period's 450, 150 carry
    first, second, third = store.grants()
    assert (first.remaining, second.remaining, second.expired) == (0, credits(150), credits(300))
    assert third.remaining == credits(500)
    assert [amount for kind, amount in store.kinds() if kind == "expire"] == [
        -credits(250),
        -credits(300),
    ]
    assert store.balance() == credits(650)


def test_full_rollover_carries_every_unused_credit_while_the_plan_lives(store):
    set_terms(Plan, "plan_starter", rollover="full")
    store.buy(plan="plan_starter")
    store.advance(31)
    store.advance(31)
    assert [grant.remaining for grant in store.grants()] == [credits(500)] * 3
    assert "expire" not in [kind for kind, _ in store.kinds()]
    assert store.balance() == credits(1500)


def test_cancelling_at_period_end_keeps_the_credits_until_then(store):
    store.buy(plan="plan_starter")
    sub = store.subscription()
    cancel = {"cancel_at_period_end": "true"}
    assert store.stripe.post(f"/subscriptions/{sub.stripe_subscription_id}", data=cancel).is_success
    deliver(store.runner)
    assert store.balance() == credits(500)  # cancelled, still this period's credits
    page = text_of(store.browser.get("/billing").text)
    assert f"ends {sub.current_period_end:%Y-%m-%d}" in page

    store.advance(31)  # the period ends: the subscription with it, and its credits
    assert store.subscription().status == "canceled"
    assert store.kinds()[-1] == ("expire", -credits(500))
    assert store.balance() == 0
    assert [kind for kind, _ in store.kinds()].count("subscription") == 1  # no renewal


def test_cancelling_now_keeps_the_credits_until_the_period_paid_for_ends(store):
    store.buy(plan="plan_starter")
    sub = store.subscription()
    assert store.stripe.delete(f"/subscriptions/{sub.stripe_subscription_id}").is_success
    deliver(store.runner)
    assert store.subscription().status == "canceled"
    (grant,) = store.grants()
    assert (grant.remaining, grant.expires_at, grant.rollover) == (
        credits(500),
        sub.current_period_end,
        "none",
    )
    assert store.balance() == credits(500)
    assert "Pay as you go" in store.browser.get("/billing").text


def test_a_renewal_delivered_twice_closes_its_period_once(client, store):
    """Stripe may send an event twice (and a different event about the same invoice)."""
    from tests.billing_helpers import post_event

    store.buy(plan="plan_starter")
    store.advance(31)
    renewal = store.stripe.get("/events", params={"type": "invoice.paid"}).json()["data"][0]
    assert renewal["data"]["object"]["billing_reason"] == "subscription_cycle"
    assert post_event(client, renewal).json["outcome"].startswith("duplicate")
    assert "already granted" in post_event(client, {**renewal, "id": "evt_resent"}).json["outcome"]
    assert [kind for kind, _ in store.kinds()].count("expire") == 1
    assert store.balance() == credits(500)


# --- packages --------------------------------------------------------------------------------


def test_a_package_with_a_validity_grants_credits_that_expire_after_it(store):
    set_terms(Package, "package_small", validity_days=30)
    session_id = store.buy(package="package_small")
    paid_at = scalar(select(Payment.paid_at).where(Payment.checkout_session_id == session_id))
    store.buy(package="package_medium")  # no validity: never expires
    small, medium = store.grants()
    assert (small.source_ref, small.expires_at) == (
        f"checkout:{session_id}",
        paid_at + timedelta(30),
    )
    assert medium.expires_at is None
    page = text_of(store.browser.get("/billing").text)
    assert "Credits expire 30 days after purchase" in page and "Credits never expire" in page


# --- what the billing page says --------------------------------------------------------------


@pytest.mark.parametrize(
    ("terms", "rule"),
    [
        ({}, "Unused credits expire at the end of each period"),
        ({"rollover": "capped", "rollover_cap": credits(250)}, "Up to 250 unused credits carry"),
        ({"rollover": "full"}, "Unused credits carry over"),
    ],
)
def test_the_billing_page_states_each_plans_rule(client, auth, shop, terms, rule):
    if terms:
        set_terms(Plan, "plan_professional", **terms)
    auth.login(OWNER)
    html = client.get("/billing").get_data(as_text=True)
    assert "Credits never expire." not in html  # no longer true of everything
    card = html.split('data-testid="plan-plan_professional"')[1].split("</article>")[0]
    assert rule in text_of(card)


def test_the_demo_catalogue_shows_a_capped_plan_and_a_package_valid_for_a_year(runner, client):
    assert runner.invoke(args=["demo"]).exit_code == 0
    assert (
        client.post(
            "/login", data={"email": "owner@demo.example", "password": "demo-owner-pw"}
        ).status_code
        == 302
    )
    page = text_of(client.get("/billing").get_data(as_text=True))
    assert "Up to 500 unused credits carry over one period" in page
    assert "Credits expire 365 days after purchase" in page
    assert "Unused credits expire at the end of each period" in page  # Starter keeps the default


# --- the admin's form ------------------------------------------------------------------------

NEW_PLAN = {
    "lookup_key": "plan_team",
    "name": "Team",
    "price": "49",
    "credits": "1000",
    "rollover": "capped",
    "rollover_cap": "200.5",
    "active": "y",
}
NEW_PACKAGE = {"lookup_key": "package_year", "name": "Year", "price": "99", "credits": "3000"}


@pytest.fixture
def admin(client, auth, shop):
    auth.login(pages.ADMIN)
    return client


def test_the_admin_sets_a_plans_rollover_and_a_packages_validity(admin):
    plan_form = admin.get("/admin/billing/plans/new").get_data(as_text=True)
    assert "Credits per period" in plan_form and "Valid for (days)" not in plan_form
    package_form = admin.get("/admin/billing/packages/new").get_data(as_text=True)
    assert "Valid for (days)" in package_form and "Rollover" not in package_form
    assert admin.post("/admin/billing/plans/new", data=NEW_PLAN).status_code == 302
    plan = find(Plan, "plan_team")
    assert (plan.rollover, plan.rollover_cap, plan.credits) == (
        "capped",
        credits("200.5"),
        credits(1000),
    )
    package = {**NEW_PACKAGE, "validity_days": "365"}
    assert admin.post("/admin/billing/packages/new", data=package).status_code == 302
    assert find(Package, "package_year").validity_days == 365
    listing = text_of(admin.get("/admin/billing").get_data(as_text=True))
    assert "Up to 200.5 unused credits carry over one period" in listing
    assert "Credits expire 365 days after purchase" in listing

    edit = admin.get(f"/admin/billing/plans/{plan.id}").get_data(as_text=True)
    assert 'value="200.5"' in edit and '<option selected value="capped">' in edit
    changed = {**NEW_PLAN, "rollover": "full", "rollover_cap": ""}
    del changed["lookup_key"]
    assert admin.post(f"/admin/billing/plans/{plan.id}", data=changed).status_code == 302
    assert (find(Plan, "plan_team").rollover, find(Plan, "plan_team").rollover_cap) == (
        "full",
        None,
    )
    cleared = {"name": "Year", "price": "99", "credits": "3000", "validity_days": ""}
    year = find(Package, "package_year")
    assert admin.post(f"/admin/billing/packages/{year.id}", data=cleared).status_code == 302
    assert find(Package, "package_year").validity_days is None


@pytest.mark.parametrize(
    ("kinds", "changes", "field", "message"),
    [
        ("plans", {"rollover_cap": ""}, "rollover_cap", "Enter how many unused credits may"),
        ("plans", {"rollover": "none"}, "rollover_cap", "Only a capped rollover has a cap"),
        ("plans", {"rollover": "full"}, "rollover_cap", "Only a capped rollover has a cap"),
        ("plans", {"rollover_cap": "0"}, "rollover_cap", "greater than zero"),
        ("plans", {"rollover_cap": "-5"}, "rollover_cap", "must not be negative"),
        ("plans", {"rollover_cap": "1.1234567"}, "rollover_cap", "at most 6 decimal places"),
        ("plans", {"rollover_cap": "lots"}, "rollover_cap", "Type an amount like 1234.5"),
        ("plans", {"rollover": "weekly"}, "rollover", "Not a valid choice"),
        ("packages", {"validity_days": "0"}, "validity_days", "Enter 1 to 3,650 days."),
        ("packages", {"validity_days": "3651"}, "validity_days", "Enter 1 to 3,650 days."),
        ("packages", {"validity_days": "a year"}, "validity_days", "Not a valid integer value"),
    ],
)
def test_invalid_terms_are_shown_next_to_their_field(admin, kinds, changes, field, message):
    data = {**(NEW_PLAN if kinds == "plans" else NEW_PACKAGE), **changes}
    response = admin.post(f"/admin/billing/{kinds}/new", data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    error = html.split(f'id="{field}-error">')
    assert len(error) == 2 and message in error[1].split("</p>")[0], html
    assert find(Plan, "plan_team") is None and find(Package, "package_year") is None
