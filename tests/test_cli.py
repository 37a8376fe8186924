"""Operator commands: flask org / apikey / pricing / credits and flask demo."""

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import func, select

from portal.credits import organizations
from portal.credits.apikeys import KEY_PREFIX, hash_secret
from portal.credits.catalogue import DEFAULT_PRICES
from portal.credits.demo import DEMO_SLUG
from portal.credits.models import ApiKey, FeaturePrice, LedgerEntry
from portal.extensions import db
from portal.timeutil import utcnow
from tests.conftest import balance_row, credits, ledger_rows


def invoke(runner, *args):
    result = runner.invoke(args=[str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()


def fails(runner, *args):
    result = runner.invoke(args=[str(arg) for arg in args])
    assert result.exit_code != 0, result.output
    return result.output


def printed_keys(lines):
    return [line for line in lines if line.startswith(KEY_PREFIX) and line.split() == [line]]


def test_org_create(runner):
    invoke(runner, "org", "create", "acme-labs", "--name", "Acme Labs", "--credits", "12.5")
    organization = organizations.get_by_slug("acme-labs")
    assert organization.name == "Acme Labs"
    assert balance_row(organization.id) == (credits("12.5"), 0)
    (grant,) = ledger_rows(organization.id)
    assert (grant.kind, grant.amount) == ("grant", credits("12.5"))


def test_org_create_without_credits_writes_no_ledger_row(runner):
    invoke(runner, "org", "create", "empty")
    organization = organizations.get_by_slug("empty")
    assert (organization.name, ledger_rows(organization.id)) == ("empty", [])


def test_org_create_refusals(runner, make_org, db_state, subtests):
    make_org(slug="taken")
    before = db_state()
    for args in (
        ["Not A Slug"],
        ["taken"],  # exists already
        ["ok", "--credits", "-1"],
        ["ok", "--credits", "0.0000001"],
        ["ok", "--credits", "lots"],
    ):
        with subtests.test(args=" ".join(args)):
            fails(runner, "org", "create", *args)
    assert db_state() == before


def test_apikey_create_prints_a_working_secret_alone_on_the_last_line(runner, make_org, api):
    org = make_org(balance=3)
    lines = invoke(runner, "apikey", "create", org.slug, "--name", "ci")
    secret = lines[-1]
    assert secret.split() == [secret]
    assert secret not in "\n".join(lines[:-1])  # shown once
    r = api.get("/balance", headers={"Authorization": f"Bearer {secret}"})
    assert (r.status_code, r.json["organization"]) == (200, org.slug)
    key = db.session.scalar(select(ApiKey).where(ApiKey.secret_hash == hash_secret(secret)))
    assert (key.name, key.organization_id) == ("ci", org.id)
    assert secret.startswith(key.prefix) and secret != key.prefix


def test_apikey_create_for_an_unknown_organization(runner):
    assert "nobody" in fails(runner, "apikey", "create", "nobody")


def test_pricing_set(runner, make_org, api):
    invoke(
        runner,
        "pricing",
        "set",
        "claude_input_1k_tokens",
        "--credits",
        "0.003",
        "--name",
        "Claude input",
        "--category",
        "Text",
        "--unit",
        "1k_tokens",
        "--description",
        "Per thousand input tokens.",
    )
    r = api.get("/features/pricing", query_string={"key": "claude_input_1k_tokens"})
    assert r.json == {
        "feature_key": "claude_input_1k_tokens",
        "name": "Claude input",
        "category": "Text",
        "credits": Decimal("0.003"),
        "unit": "1k_tokens",
        "description": "Per thousand input tokens.",
        "active": True,
    }
    org = make_org(balance=1)
    spent = api.post(
        "/credits/deduct", org, json={"feature_key": "claude_input_1k_tokens", "quantity": 7}
    )
    assert spent.json["credits_deducted"] == Decimal("0.003") * 7


def test_pricing_set_inactive_then_active_again(runner, make_org, api, db_state):
    invoke(runner, "pricing", "set", "beta_feature", "--credits", "2", "--category", "Labs")
    invoke(runner, "pricing", "set", "beta_feature", "--credits", "3", "--inactive")
    pricing = api.get("/features/pricing", query_string={"key": "beta_feature"}).json
    # fields left out keep their value; the price and state change
    assert (pricing["credits"], pricing["category"], pricing["active"]) == (3, "Labs", False)
    org = make_org(balance=10)
    assert "beta_feature" not in {
        row["feature_key"] for row in api.get("/features", org).json["data"]
    }
    before = db_state()
    r = api.post("/credits/deduct", org, json={"feature_key": "beta_feature"})
    assert (r.status_code, r.json["error"]["code"]) == (404, "feature_not_found")
    assert db_state() == before
    invoke(runner, "pricing", "set", "beta_feature", "--credits", "3")
    assert api.post("/credits/deduct", org, json={"feature_key": "beta_feature"}).status_code == 201


def test_pricing_set_refusals(runner, subtests):
    for args in (["Bad-Key", "--credits", "1"], ["fine_key", "--credits", "-1"], ["fine_key"]):
        with subtests.test(args=" ".join(args)):
            fails(runner, "pricing", "set", *args)
    assert db.session.scalar(select(func.count()).select_from(FeaturePrice)) == 0


def test_credits_grant(runner, make_org):
    org = make_org(balance=10)
    before, _ = balance_row(org.id)
    invoke(runner, "credits", "grant", org.slug, "2.5", "--reason", "goodwill")
    assert balance_row(org.id) == (before + credits("2.5"), 0)
    row = ledger_rows(org.id)[-1]
    assert (row.kind, row.amount, row.description) == ("grant", credits("2.5"), "goodwill")
    invoke(runner, "credits", "grant", org.slug, "--reason", "correction", "--", "-1")
    row = ledger_rows(org.id)[-1]
    assert (row.kind, row.amount) == ("adjustment", -credits(1))
    assert balance_row(org.id) == (before + credits("1.5"), 0)


def test_credits_grant_refusals(runner, make_org, db_state, subtests):
    org = make_org(balance=10)
    before = db_state()
    for args in (
        ["nobody", "5", "--reason", "x"],
        [org.slug, "5"],  # no reason
        [org.slug, "0", "--reason", "x"],
        [org.slug, "--reason", "more than there is", "--", "-11"],
        [org.slug, "1.0000001", "--reason", "x"],
    ):
        with subtests.test(args=" ".join(args)):
            fails(runner, "credits", "grant", *args)
    assert db_state() == before


def test_demo_is_idempotent_with_90_days_of_usage_and_a_working_key(runner, api, db_state):
    (secret,) = printed_keys(invoke(runner, "demo"))
    r = api.get("/balance", headers={"Authorization": f"Bearer {secret}"})
    assert (r.status_code, r.json["organization"]) == (200, DEMO_SLUG)
    demo = organizations.get_by_slug(DEMO_SLUG)
    prices = set(db.session.scalars(select(FeaturePrice.feature_key)))
    assert prices == {row[0] for row in DEFAULT_PRICES}
    rows = ledger_rows(demo.id)
    usage_days = {row.created_at.date() for row in rows if row.kind == "deduct"}
    now = utcnow()
    assert min(usage_days) >= (now - timedelta(days=90)).date()
    assert max(usage_days) >= (now - timedelta(days=1)).date()
    assert len(usage_days) >= 89  # every day of the last 90 has usage
    assert r.json["balance"] == sum(row.amount for row in rows) / Decimal(10**6)
    for department in api.get("/departments", headers={"Authorization": f"Bearer {secret}"}).json[
        "data"
    ]:  # room left in every limit: the README's examples charge "Marketing"
        limit = department["monthly_limit"]
        assert limit is None or department["used_this_month"] <= limit * Decimal("0.8")
    usage = api.get("/usage/summary", headers={"Authorization": f"Bearer {secret}"})
    assert usage.json["total"] > 0
    before = db_state()
    assert printed_keys(invoke(runner, "demo")) == []  # the key was shown once
    assert db_state() == before
    assert db.session.scalar(select(func.count()).select_from(LedgerEntry)) == len(rows)
