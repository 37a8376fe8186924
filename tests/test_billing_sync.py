"""``flask stripe sync``: products and prices by lookup key, against the sandbox; idempotent."""

from __future__ import annotations

import re

import pytest
import stripe
from sqlalchemy import select

from portal.billing import catalogue
from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Package, Plan
from portal.extensions import db
from tests.live import serve_in_thread as live_server

KEYS = 7  # three plans, four packages


@pytest.fixture
def live(app):
    seed_catalogue()
    with live_server(app) as url:
        app.config["PORTAL_BASE_URL"] = url
        yield url


def sync(runner) -> dict[str, tuple[str, str, str]]:
    """lookup key -> (action, product id, price id), as the command prints them."""
    result = runner.invoke(args=["stripe", "sync"])
    assert result.exit_code == 0, result.output
    rows = re.findall(
        r"^\s+(\w+)\s+(created|new price|unchanged|off sale)\s+(\S+)\s+(\S+)$", result.output, re.M
    )
    return {key: (action, product, price) for key, action, product, price in rows}


def stored(model, key):
    db.session.expire_all()
    item = db.session.scalar(select(model).where(model.lookup_key == key))
    found = (item.stripe_product_id, item.stripe_price_id)
    db.session.rollback()
    return found


def sandbox_price(url: str, lookup_key: str):
    client = stripe.StripeClient("sk_test_sandbox", base_addresses={"api": f"{url}/_stripe"})
    return client.v1.prices.list(params={"lookup_keys": [lookup_key]}).data


def test_sync_creates_once_then_changes_nothing(live, runner):
    first = sync(runner)
    assert len(first) == KEYS and {action for action, _, _ in first.values()} == {"created"}
    assert stored(Plan, "plan_starter") == first["plan_starter"][1:]
    again = sync(runner)
    assert {action for action, _, _ in again.values()} == {"unchanged"}
    assert {k: v[1:] for k, v in again.items()} == {k: v[1:] for k, v in first.items()}
    (price,) = sandbox_price(live, "package_small")
    assert (price.unit_amount, price.currency, price.active) == (990, "usd", True)
    (plan_price,) = sandbox_price(live, "plan_professional")
    assert plan_price.recurring.interval == "month"


def test_a_new_price_moves_the_lookup_key_and_keeps_the_product(live, runner):
    before = sync(runner)["package_small"]
    package = db.session.scalar(select(Package).where(Package.lookup_key == "package_small"))
    package_id, credits_micros = package.id, package.credits
    db.session.rollback()
    catalogue.save_item(
        "package", catalogue.ItemSpec("Small", 1090, credits_micros), item_id=package_id
    )
    after = sync(runner)["package_small"]
    assert after[0] == "new price"
    assert after[1] == before[1]  # same product
    assert after[2] != before[2]
    (price,) = sandbox_price(live, "package_small")
    assert (price.id, price.unit_amount) == (after[2], 1090)


def test_an_archived_item_goes_off_sale_in_stripe(live, runner):
    sync(runner)
    plan = db.session.scalar(select(Plan).where(Plan.lookup_key == "plan_enterprise"))
    plan_id = plan.id
    db.session.rollback()
    catalogue.set_archived("plan", plan_id, True)
    assert sync(runner)["plan_enterprise"][0] == "off sale"
    (price,) = sandbox_price(live, "plan_enterprise")
    assert price.active is False
