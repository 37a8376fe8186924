"""No page, partial, export or API call shows or changes another organization's data.

Two organizations with distinctive data; a user (or API key) of the first probes every route,
using the second organization's ids wherever a route takes one. The route list is checked
against the URL map, so a new route cannot be added without deciding how it is isolated.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.auth.models import Membership
from portal.billing.catalogue import seed_catalogue
from portal.billing.models import Plan, Subscription
from portal.credits import service
from portal.credits.models import ApiKey, Department, LedgerEntry, Organization
from portal.extensions import db
from portal.timeutil import utcnow
from portal.webhooks import service as webhooks
from portal.webhooks.models import WebhookAttempt, WebhookDelivery
from tests.billing_helpers import make_buyer, open_checkout
from tests.conftest import credits
from tests.webhook_helpers import make_event

SECRET_MARKERS = (
    "other-secret-feature",
    "OtherDept",
    "victim@example.com",
    "Victim Org",
    "victim-hook",
)
# Platform-wide by design (platform admins only; see tests/test_admin_*.py) or public.
PLATFORM_SCOPE = (
    "/admin",
    "/api/admin",
    "/static",
    "/favicon.ico",  # a redirect to /static/favicon.svg
    "/api/v1/openapi.json",
    "/api/v1/features",
    "/_stripe",
    "/stripe/webhook",
)


@pytest.fixture
def two_orgs(make_org, make_user, make_price, auth):
    make_price("shared_feature", 1, category="Shared")
    make_price("other-secret-feature".replace("-", "_"), 1, category="Secret")
    mine = make_org(balance=50, slug="mine")
    theirs = make_org(balance=50, slug="victim-org")
    db.session.get(Organization, theirs.id).name = "Victim Org"
    db.session.commit()
    make_user("me@example.com", org=mine, role="owner")
    make_user("victim@example.com", org=theirs, role="owner")
    service.set_department_limit(theirs.id, "OtherDept", credits(10))
    their_deduction = service.deduct(
        theirs.organization,
        service.Spend(
            "other_secret_feature",
            credits(2),
            department="OtherDept",
            description="other-secret-feature run",
        ),
    )
    hold = service.reserve(theirs.organization, "shared_feature", credits(1), 600)
    service.grant(  # a grant of theirs that expires: on their credits page and balance only
        theirs.id,
        credits(3),
        "grant",
        description="Victim Org loyalty credits",
        terms=service.GrantTerms(expires_at=utcnow() + timedelta(days=2)),
    )
    service.deduct(mine.organization, service.Spend("shared_feature"))
    auth.login("me@example.com")
    return mine, theirs, their_deduction, hold


def _state(org_id: int) -> tuple:
    organization = db.session.get(Organization, org_id, populate_existing=True)
    rows = db.session.scalar(
        select(func.count()).select_from(LedgerEntry).where(LedgerEntry.organization_id == org_id)
    )
    keys = db.session.scalar(
        select(func.count())
        .select_from(ApiKey)
        .where(ApiKey.organization_id == org_id, ApiKey.revoked_at.is_(None))
    )
    departments = db.session.execute(
        select(Department.name, Department.monthly_limit).where(
            Department.organization_id == org_id
        )
    ).all()
    members = db.session.execute(
        select(Membership.user_id, Membership.role).where(Membership.organization_id == org_id)
    ).all()
    return organization.balance, organization.reserved, rows, keys, departments, members


def test_every_route_is_isolated(app, client, two_orgs):
    mine, theirs, their_deduction, hold = two_orgs
    their_key = db.session.scalar(select(ApiKey.id).where(ApiKey.organization_id == theirs.id))
    their_dept = db.session.scalar(
        select(Department.id).where(Department.organization_id == theirs.id)
    )
    their_membership = db.session.scalar(
        select(Membership.id).where(Membership.organization_id == theirs.id)
    )
    from portal.auth import invitations
    from portal.auth import service as people

    their_invitation = invitations.invite(
        theirs.id, "member", "guest@example.com", people.find_user("victim@example.com")
    ).invitation.id
    seed_catalogue()  # PostgreSQL tests start from truncated tables
    their_session = open_checkout(make_buyer(theirs.id), plan=_plan("plan_starter"))
    app.config["PORTAL_WEBHOOKS_ALLOW_PRIVATE"] = True
    hook = webhooks.create_endpoint(theirs.id, "http://127.0.0.1:9/victim-hook").endpoint
    their_hook = hook.public_id
    their_event = make_event(theirs.id)
    their_delivery = db.session.scalar(
        select(WebhookDelivery.id).where(WebhookDelivery.outbox_event_id == their_event.id)
    )
    before = _state(theirs.id)
    pages = [
        "/",
        "/dashboard",
        "/dashboard?days=90",
        "/dashboard/chart?days=90",
        "/usage",
        "/usage.csv",
        "/transactions",
        "/transactions?kind=deduct",
        "/credits",
        "/credits?status=all",
        "/credits?status=expired",
        "/settings",
        "/settings/api-keys",
        "/settings/departments",
        "/settings/members",
        "/settings/webhooks",
        "/signup",
        "/login",
        "/billing",
        "/settings/account",
        "/forgot-password",
    ]
    for path in (
        f"/billing/success?session_id={their_session}",
        f"/billing/success/status?session_id={their_session}",
    ):
        assert client.get(path).status_code == 404, path
    # Their live subscription is not ours to switch (or to see on the confirmation page).
    db.session.add(
        Subscription(
            organization_id=theirs.id,
            stripe_subscription_id="sub_victim",
            plan_id=_plan("plan_starter").id,
            status="active",
        )
    )
    db.session.commit()
    switch = "/billing/plans/plan_professional/switch"
    refused = client.get(switch)
    assert refused.status_code == 409 and "no plan to switch" in refused.get_data(as_text=True)
    for path in pages:
        response = client.get(path, follow_redirects=True)
        body = response.get_data(as_text=True)
        assert response.status_code in (200, 422), path
        for marker in SECRET_MARKERS:
            assert marker not in body, (path, marker)
    # Filtering by their department name (echoed back in the form) finds none of their rows.
    assert "No usage found" in client.get("/usage?department=OtherDept").get_data(as_text=True)
    forms = [
        (f"/settings/api-keys/{their_key}/revoke", {}),
        (f"/settings/departments/{their_dept}/limit", {"monthly_limit": "999"}),
        (f"/settings/members/{their_membership}/role", {"role": "member"}),
        (f"/settings/members/{their_membership}/remove", {}),
        (f"/settings/members/invitations/{their_invitation}/resend", {}),
        (f"/settings/members/invitations/{their_invitation}/revoke", {}),
        ("/settings/account/password", {"current_password": "x"}),
        ("/settings/account/email", {"email": "victim@example.com", "current_password": "x"}),
        ("/verify-email/resend", {}),
        ("/orgs/switch", {"organization_id": theirs.id}),
        ("/billing/checkout", {"package": "no_such_package"}),
        ("/billing/portal", {}),
        (switch, {"replace_cancellation": "1"}),
        (f"/settings/webhooks/{their_hook}/delete", {}),
        (f"/settings/webhooks/{their_hook}/test", {}),
        (f"/settings/webhooks/deliveries/{their_delivery}/resend", {}),
    ]
    for path, data in forms:
        response = client.post(path, data=data)
        assert response.status_code in (302, 403, 404, 409, 422), path
        if response.status_code == 302:  # flashed error, back to our own page
            assert "victim" not in client.get(response.headers["Location"]).get_data(as_text=True)
    api = [
        ("GET", "/api/v1/balance", None),
        (
            "POST",
            "/api/v1/credits/check",
            {"feature_key": "shared_feature", "department": "OtherDept"},
        ),
        (
            "POST",
            "/api/v1/credits/deduct",
            {"feature_key": "shared_feature", "department": "OtherDept"},
        ),
        (
            "POST",
            "/api/v1/credits/deduct-batch",
            {"lines": [{"feature_key": "shared_feature", "department": "OtherDept"}]},
        ),
        ("POST", "/api/v1/credits/refund", {"deduction_id": their_deduction.deduction_id}),
        ("POST", "/api/v1/credits/reservations", {"feature_key": "shared_feature"}),
        ("POST", f"/api/v1/credits/reservations/{hold.reservation_id}/capture", {}),
        ("POST", f"/api/v1/credits/reservations/{hold.reservation_id}/release", {}),
        ("GET", "/api/v1/features/pricing?key=shared_feature", None),
        ("GET", "/api/v1/usage", None),
        ("GET", "/api/v1/usage/summary?group_by=department", None),
        ("GET", "/api/v1/transactions", None),
        ("GET", "/api/v1/transactions?kind=grant", None),
        ("GET", "/api/v1/credits/grants?status=all", None),
        ("GET", "/api/v1/departments", None),
        ("PUT", "/api/v1/departments/OtherDept/limit", {"monthly_limit": 1}),
        ("GET", "/api/v1/webhook-endpoints", None),
        ("DELETE", f"/api/v1/webhook-endpoints/{their_hook}", None),
        ("POST", f"/api/v1/webhook-endpoints/{their_hook}/test", {}),
    ]
    for method, path, body in api:
        response = client.open(path, method=method, json=body, headers=mine.headers)
        text = response.get_data(as_text=True)
        assert response.status_code < 500, path
        assert "victim" not in text and "other_secret_feature run" not in text, path
        assert "Victim Org" not in text, path
        if "refund" in path or "reservations/" in path or "webhook-endpoints/" in path:
            assert response.status_code == 404, path
    # Our own PUT created our own "OtherDept"; theirs is untouched.
    assert _state(theirs.id) == before
    assert [i.id for i in invitations.pending_invitations(theirs.id)] == [their_invitation]
    # Their endpoint stands, untested and unsent; our listings never showed it.
    assert [e.public_id for e in webhooks.list_endpoints(theirs.id)] == [their_hook]
    assert db.session.scalar(select(func.count()).select_from(WebhookAttempt)) == 0

    covered = (
        {p.split("?")[0] for p in pages}
        | {p for p, _ in forms}
        | {p.split("?")[0] for _, p, _ in api}
    )
    covered |= {"/invite/<token>", "/logout", "/billing/success", "/billing/success/status"}
    # Links mailed to one account: the token alone names the account, never an organization.
    covered |= {
        "/reset-password/<token>",
        "/verify-email/<token>",
        "/settings/account/email/<token>",
    }
    covered.add(switch)
    for rule in app.url_map.iter_rules():
        path = rule.rule
        if path.startswith(PLATFORM_SCOPE):
            continue
        concrete = {c for c in covered if _matches(rule, c)}
        assert path in covered or concrete, f"route {path} has no isolation probe"


def _plan(lookup_key: str) -> Plan:
    return db.session.scalar(select(Plan).where(Plan.lookup_key == lookup_key))


def _matches(rule, path: str) -> bool:
    adapter_rule = rule.rule
    parts, probe = adapter_rule.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(probe) and all(
        a == b or a.startswith("<") for a, b in zip(parts, probe, strict=True)
    )


def test_invitation_of_other_org_cannot_be_reused_for_mine(client, two_orgs, auth):
    _mine, theirs, *_ = two_orgs
    from portal.auth import invitations
    from portal.auth import service as people

    victim = people.find_user("victim@example.com")
    invite = invitations.invite(theirs.id, "member", "someone@example.com", victim)
    # The invitation is bound to its email: I cannot spend it.
    assert client.post(f"/invite/{invite.token}").status_code == 403
    assert not any(
        m.organization_id == theirs.id for m in people.find_user("me@example.com").memberships
    )
