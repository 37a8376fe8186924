"""Sign-up, login, logout, sessions, remember-me, organization switching, user CLI."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from sqlalchemy import select

from portal.auth.models import Membership, User
from portal.credits.models import LedgerEntry, Organization
from portal.extensions import db
from tests.conftest import DEFAULT_PASSWORD, credits, verify_by_email


def test_signup_creates_user_owned_org_with_bonus_once_verified(client, auth, app, mailbox):
    response = auth.signup("new@example.com", "Acme Labs 2")
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"
    waiting = db.session.scalar(select(Organization).where(Organization.slug == "acme-labs-2"))
    assert waiting.balance == 0
    db.session.rollback()
    assert verify_by_email(client, mailbox, "new@example.com").status_code == 302
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


@pytest.mark.parametrize(("setting", "days"), [(30, 30), (7, 7), (0, None), ("", None)])
def test_the_signup_bonus_expires_days_after_it_is_granted(app, make_org, setting, days):
    from portal.auth.service import grant_signup_bonus
    from portal.credits.models import CreditGrant
    from portal.timeutil import utcnow

    app.config["PORTAL_SIGNUP_CREDITS_EXPIRE_DAYS"] = setting
    org = make_org(balance=0)
    before = utcnow()
    assert grant_signup_bonus(org.id)
    bonus = db.session.scalar(select(CreditGrant).where(CreditGrant.organization_id == org.id))
    assert (bonus.kind, bonus.priority) == ("signup_bonus", 10)
    if days is None:
        assert bonus.expires_at is None
    else:
        assert before + timedelta(days=days) <= bonus.expires_at <= utcnow() + timedelta(days=days)


@pytest.mark.parametrize(("raw", "days"), [(None, 30), ("", 0), (" 0 ", 0), ("14", 14)])
def test_the_signup_bonus_expiry_setting(monkeypatch, tmp_path, raw, days):
    from portal.config import load_config

    if raw is None:
        monkeypatch.delenv("PORTAL_SIGNUP_CREDITS_EXPIRE_DAYS", raising=False)
    else:
        monkeypatch.setenv("PORTAL_SIGNUP_CREDITS_EXPIRE_DAYS", raw)
    assert load_config(str(tmp_path))["PORTAL_SIGNUP_CREDITS_EXPIRE_DAYS"] == days


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
        ({"email": "a@b.com", "password": "short", "organization": "X Co"}, "password", "10"),
        ({"email": "a@b.com", "password": "123456789", "organization": "X Co"}, "password", "10"),
        (
            {"email": "a@b.com", "password": "1234567890", "organization": "X Co"},
            "password",
            "common",
        ),
        (
            {"email": "a@b.com", "password": "Password123", "organization": "X Co"},
            "password",
            "common",
        ),
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
        args=["user", "create", "cli@example.com", "--password", "long-enough", "--org", "cli-co"]
    )
    assert result.exit_code == 0, result.output
    admin = runner.invoke(
        args=["user", "create", "root@example.com", "--password", "long-enough", "--admin"]
    )
    assert admin.exit_code == 0, admin.output
    users = {u.email: u for u in db.session.scalars(select(User))}
    assert users["root@example.com"].is_admin and not users["cli@example.com"].is_admin
    assert users["cli@example.com"].email_verified and users["root@example.com"].email_verified
    assert [m.organization_id for m in users["cli@example.com"].memberships] == [org.id]
    again = runner.invoke(args=["user", "create", "cli@example.com", "--password", "long-enough"])
    assert again.exit_code != 0 and "already exists" in again.output


@pytest.mark.parametrize(
    ("password", "message"),
    [("short-pw", "at least 10 characters"), ("qwertyuiop", "most common passwords")],
)
def test_user_create_command_applies_the_password_policy(runner, password, message):
    result = runner.invoke(args=["user", "create", "weak@example.com", "--password", password])
    assert result.exit_code != 0 and message in result.output
    assert db.session.scalar(select(User.id)) is None


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


# --- sessions end when they should ----------------------------------------------------------


def _cookie(client, name: str) -> str:
    cookie = client.get_cookie(name)
    assert cookie is not None, f"no {name} cookie"
    return cookie.value


def _replay(app, **cookies: str):
    """A fresh browser that holds only the given (earlier) cookies, asking for the dashboard."""
    browser = app.test_client()
    for name, value in cookies.items():
        browser.set_cookie(name, value)
    return browser.get("/dashboard")


def _login(client, remember: bool = False):
    data = {"email": "me@example.com", "password": DEFAULT_PASSWORD}
    if remember:
        data["remember"] = "y"
    response = client.post("/login", data=data)
    assert response.status_code == 302
    return response


def test_logout_ends_the_session_cookie_it_was_given(app, client, make_user, make_org):
    make_user("me@example.com", org=make_org())
    _login(client)
    old_session = _cookie(client, "session")
    assert _replay(app, session=old_session).status_code == 200
    client.post("/logout")
    replayed = _replay(app, session=old_session)
    assert replayed.status_code == 302 and replayed.headers["Location"].startswith("/login")


def test_logout_ends_the_remember_me_cookie(app, client, make_user, make_org):
    make_user("me@example.com", org=make_org())
    _login(client, remember=True)
    remember = _cookie(client, "remember_token")
    assert _replay(app, remember_token=remember).status_code == 200  # the cookie alone logs in
    client.post("/logout")
    replayed = _replay(app, remember_token=remember)
    assert replayed.status_code == 302 and replayed.headers["Location"].startswith("/login")


def test_logout_ends_the_users_sessions_on_other_devices(app, make_user, make_org):
    make_user("me@example.com", org=make_org())
    laptop, phone = app.test_client(), app.test_client()
    _login(laptop)
    _login(phone, remember=True)
    laptop.post("/logout")
    assert phone.get("/dashboard").status_code == 302


def test_each_login_gets_its_own_remember_cookie_for_30_days(app, client, make_user, make_org):
    make_user("me@example.com", org=make_org())
    first = _login(client, remember=True)
    first_cookie = _cookie(client, "remember_token")
    client.delete_cookie("session")
    client.delete_cookie("remember_token")
    _login(client, remember=True)
    assert _cookie(client, "remember_token") != first_cookie
    assert app.config["REMEMBER_COOKIE_DURATION"] == timedelta(days=30)
    header = next(c for c in first.headers.getlist("Set-Cookie") if "remember_token=" in c)
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", header).group(1))
    lifetime = expires - datetime.now(UTC)
    assert timedelta(days=29, hours=23) < lifetime <= timedelta(days=30)


def test_session_ids_from_before_versions_are_refused(app, make_user, make_org):
    user = make_user("me@example.com", org=make_org())
    browser = app.test_client()
    with browser.session_transaction() as session:
        session["_user_id"] = str(user.id)  # the old login id: the bare user id
        session["_fresh"] = True
    assert browser.get("/dashboard").status_code == 302


# --- signed-in users at /login, /signup and /admin ------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/signup"])
def test_signed_in_user_at_login_or_signup_goes_to_the_dashboard(
    client, auth, make_user, make_org, path
):
    make_user("me@example.com", org=make_org())
    auth.login("me@example.com")
    response = client.get(path)
    assert response.status_code == 302 and response.headers["Location"] == "/dashboard"
    posted = client.post(path, data={"email": "x@example.com", "password": "whatever-pw"})
    assert posted.status_code == 302 and posted.headers["Location"] == "/dashboard"
    assert db.session.scalar(select(User.id).where(User.email == "x@example.com")) is None


def test_signed_in_admin_without_organization_at_login_goes_to_admin(client, auth, make_user):
    make_user("root@example.com", admin=True)
    auth.login("root@example.com")
    assert client.get("/login").headers["Location"] == "/admin/feature-pricing"


def test_signed_in_member_at_admin_gets_a_403_page(client, auth, make_user, make_org):
    make_user("me@example.com", org=make_org())
    auth.login("me@example.com")
    response = client.get("/admin/feature-pricing")
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "platform admins" in page and 'name="password"' not in page
