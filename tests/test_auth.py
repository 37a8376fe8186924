"""Sign-up, login, logout, remember-me, invitations, organization switching, user CLI."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.auth.models import Membership, User
from portal.credits.models import LedgerEntry, Organization
from portal.extensions import db
from tests.conftest import DEFAULT_PASSWORD, credits


def test_signup_creates_user_owned_org_with_bonus(client, auth, app):
    response = auth.signup("new@example.com", "Acme Labs 2")
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"
    user = db.session.scalar(select(User).where(User.email == "new@example.com"))
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    organization = db.session.get(Organization, membership.organization_id)
    assert (organization.slug, organization.name, membership.role) == (
        "acme-labs-2",
        "Acme Labs 2",
        "owner",
    )
    bonus = credits(app.config["PORTAL_SIGNUP_CREDITS"])
    assert organization.balance == bonus
    kinds = db.session.scalars(
        select(LedgerEntry.kind).where(LedgerEntry.organization_id == organization.id)
    ).all()
    assert kinds == ["signup_bonus"]
    assert user.password_hash.startswith("$argon2id$")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Acme Labs 2" in page and f"{int(bonus / 1_000_000)}" in page


def test_signup_slugs_are_unique(auth, client):
    auth.signup("a@example.com", "Acme Labs")
    auth.logout()
    auth.signup("b@example.com", "Acme Labs!!")
    slugs = db.session.scalars(select(Organization.slug).order_by(Organization.id)).all()
    assert slugs == ["acme-labs", "acme-labs-2"]


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "bad", "password": DEFAULT_PASSWORD, "organization": "X Co"}, "email", "email"),
        ({"email": "a@b.com", "password": "short", "organization": "X Co"}, "password", "8"),
        (
            {"email": "a@b.com", "password": DEFAULT_PASSWORD, "organization": ""},
            "organization",
            "required",
        ),
    ],
)
def test_signup_rejects_bad_fields_and_writes_nothing(client, data, field, message):
    response = client.post("/signup", data=data)
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'id="{field}-error"' in page and message.lower() in page.lower()
    assert db.session.scalar(select(User.id)) is None


def test_signup_with_taken_email_shows_error(client, make_user):
    make_user("taken@example.com")
    response = client.post(
        "/signup",
        data={"email": "Taken@Example.com", "password": DEFAULT_PASSWORD, "organization": "Co"},
    )
    assert response.status_code == 422
    assert "already exists" in response.get_data(as_text=True)
    assert db.session.scalar(select(Organization.id)) is None


def test_login_logout_and_wrong_password(client, auth, make_user, make_org):
    org = make_org()
    make_user("me@example.com", org=org)
    wrong = client.post("/login", data={"email": "me@example.com", "password": "nope-nope"})
    assert wrong.status_code == 422 and "not right" in wrong.get_data(as_text=True)
    unknown = client.post("/login", data={"email": "who@example.com", "password": "x" * 9})
    assert unknown.status_code == 422
    auth.login("me@example.com")
    assert client.get("/dashboard").status_code == 200
    assert auth.logout().status_code == 302
    assert client.get("/dashboard").headers["Location"].startswith("/login")


def test_logout_needs_post(client):
    assert client.get("/logout").status_code == 405


def test_login_follows_only_local_next(client, make_user, make_org):
    make_user("me@example.com", org=make_org())
    data = {"email": "me@example.com", "password": DEFAULT_PASSWORD}
    local = client.post("/login?next=/usage", data=data)
    assert local.headers["Location"] == "/usage"
    client.post("/logout")
    evil = client.post("/login?next=//evil.example/x", data=data)
    assert evil.headers["Location"] == "/dashboard"


def test_remember_me_sets_persistent_cookie(client, make_user, make_org):
    make_user("me@example.com", org=make_org())
    response = client.post(
        "/login", data={"email": "me@example.com", "password": DEFAULT_PASSWORD, "remember": "y"}
    )
    cookies = " ".join(response.headers.getlist("Set-Cookie"))
    assert "remember_token=" in cookies and "HttpOnly" in cookies


def test_session_cookie_flags(client, make_user, make_org):
    make_user("me@example.com", org=make_org())
    response = client.post("/login", data={"email": "me@example.com", "password": DEFAULT_PASSWORD})
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("session="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.csrf
def test_forms_without_csrf_token_are_refused(client, make_user, make_org):
    make_user("me@example.com", org=make_org())
    response = client.post("/login", data={"email": "me@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 400
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    ok = client.post(
        "/login",
        data={"email": "me@example.com", "password": DEFAULT_PASSWORD, "csrf_token": token},
    )
    assert ok.status_code == 302


def test_invitation_link_is_one_time(client, auth, make_org, make_user):
    org = make_org()
    make_user("owner@example.com", org=org, role="owner")
    make_user("joiner@example.com")
    make_user("late@example.com")
    auth.login("owner@example.com")
    page = client.post("/settings/members", data={"role": "member"}).get_data(as_text=True)
    url = re.search(r'data-testid="invite-url">([^<]+)<', page).group(1)
    path = "/" + url.split("/", 3)[3]
    auth.logout()
    anonymous = client.get(path)
    assert anonymous.status_code == 200 and "Log in" in anonymous.get_data(as_text=True)
    auth.login("joiner@example.com")
    assert client.post(path).status_code == 302
    joiner = db.session.scalar(select(User).where(User.email == "joiner@example.com"))
    roles = [(m.organization_id, m.role) for m in joiner.memberships]
    assert roles == [(org.id, "member")]
    auth.logout()
    auth.login("late@example.com")
    assert client.get(path).status_code == 404
    assert client.post(path).status_code == 404


def test_switch_between_organizations(client, auth, make_org, make_user):
    first, second = make_org(slug="first-co"), make_org(slug="second-co")
    user = make_user("both@example.com", org=first)
    from portal.auth import service as people

    people.add_membership(user, second.id, "member")
    auth.login("both@example.com")
    assert "First-Co" in client.get("/dashboard").get_data(as_text=True)
    response = client.post("/orgs/switch", data={"organization_id": second.id})
    assert response.status_code == 302
    assert "Second-Co" in client.get("/dashboard").get_data(as_text=True)
    stranger = make_org(slug="stranger-co")
    assert client.post("/orgs/switch", data={"organization_id": stranger.id}).status_code == 403


def test_user_create_command(runner, make_org):
    org = make_org(slug="cli-co")
    result = runner.invoke(
        args=["user", "create", "cli@example.com", "--password", "longenough", "--org", "cli-co"]
    )
    assert result.exit_code == 0, result.output
    admin = runner.invoke(
        args=["user", "create", "root@example.com", "--password", "longenough", "--admin"]
    )
    assert admin.exit_code == 0, admin.output
    users = {u.email: u for u in db.session.scalars(select(User))}
    assert users["root@example.com"].is_admin and not users["cli@example.com"].is_admin
    assert [m.organization_id for m in users["cli@example.com"].memberships] == [org.id]
    again = runner.invoke(args=["user", "create", "cli@example.com", "--password", "longenough"])
    assert again.exit_code != 0 and "already exists" in again.output


def test_next_request_never_inherits_the_previous_users_organization(
    client, auth, make_org, make_user
):
    first, second = make_org(slug="first-co"), make_org(slug="second-co")
    make_user("one@example.com", org=first)
    make_user("two@example.com", org=second)
    auth.login("one@example.com")
    assert "First-Co" in client.get("/dashboard").get_data(as_text=True)
    auth.logout()
    auth.login("two@example.com")
    page = client.get("/dashboard").get_data(as_text=True)
    assert "Second-Co" in page and "First-Co" not in page
