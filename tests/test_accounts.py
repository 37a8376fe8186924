"""Accounts people can recover: reset links, password and email changes, verification bonus.

Every email goes through a real SMTP server (``mailbox``); tests read the message, take its
link and follow it with the test client, as a person would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from portal.auth import account, tokens
from portal.auth import service as people
from portal.auth.models import AccountToken, User
from portal.credits.models import LedgerEntry, Organization
from portal.errors import InvalidRequest
from portal.extensions import db
from portal.timeutil import utcnow
from tests.conftest import DEFAULT_PASSWORD, credits, verify_by_email
from tests.mail_helpers import link, text_body

NEW_PASSWORD = "a-brand-new-passphrase"


def user_row(email: str) -> User:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.email == email))


def login(client, email: str, password: str):
    return client.post("/login", data={"email": email, "password": password})


def ask_reset(client, mailbox, email: str = "me@example.com") -> str:
    response = client.post("/forgot-password", data={"email": email})
    assert response.status_code == 200
    return link(mailbox.last(email), "/reset-password/")


def reset(client, path: str, password: str = NEW_PASSWORD):
    return client.post(path, data={"password": password, "confirm": password})


@pytest.fixture
def me(make_user, make_org):
    return make_user("me@example.com", org=make_org())


# --- forgot / reset ---------------------------------------------------------------------------


def test_reset_link_sets_a_new_password_once(client, mailbox, me):
    path = ask_reset(client, mailbox)
    assert client.get(path).status_code == 200
    response = reset(client, path)
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert login(client, "me@example.com", DEFAULT_PASSWORD).status_code == 422
    assert login(client, "me@example.com", NEW_PASSWORD).status_code == 302
    client.post("/logout")
    again = client.get(path)
    assert again.status_code == 410 and "already used" in again.get_data(as_text=True)
    assert reset(client, path, "yet-another-passphrase").status_code == 410
    assert login(client, "me@example.com", NEW_PASSWORD).status_code == 302
    # A notice of the change went to the account's address as well.
    assert any("was just changed" in text_body(m) for m in mailbox.to("me@example.com"))


def test_only_a_hash_of_the_reset_token_is_stored(client, mailbox, me):
    path = ask_reset(client, mailbox)
    token = path.rsplit("/", 1)[1]
    stored = db.session.scalar(select(AccountToken.token_hash))
    assert stored == tokens.token_hash(token) and token not in stored and len(stored) == 64


def test_unknown_and_known_addresses_get_the_same_answer(client, mailbox, me):
    known = client.post("/forgot-password", data={"email": "me@example.com"})
    unknown = client.post("/forgot-password", data={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200

    def page(response, address):
        return response.get_data(as_text=True).replace(address, "ADDRESS")

    # Same page apart from the address typed (and the per-session CSRF token, equal here).
    assert page(known, "me@example.com") == page(unknown, "nobody@example.com")
    # Both did the same work: one email each; the unknown one carries no reset link.
    assert "/reset-password/" in text_body(mailbox.last("me@example.com"))
    assert "/reset-password/" not in text_body(mailbox.last("nobody@example.com"))
    assert db.session.scalar(select(func.count()).select_from(AccountToken)) == 1


def test_expired_reset_link_says_so(client, mailbox, me):
    path = ask_reset(client, mailbox)
    db.session.execute(update(AccountToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    response = client.get(path)
    assert response.status_code == 410 and "expired" in response.get_data(as_text=True)
    assert reset(client, path).status_code == 410
    assert login(client, "me@example.com", DEFAULT_PASSWORD).status_code == 302


def test_reset_link_lives_one_hour(client, mailbox, me):
    ask_reset(client, mailbox)
    record = db.session.scalar(select(AccountToken))
    assert timedelta(minutes=59) < record.expires_at - record.created_at <= timedelta(hours=1)


def test_a_made_up_reset_link_is_not_valid(client):
    response = client.get("/reset-password/not-a-real-token")
    assert response.status_code == 404 and "not valid" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("short-pw", "short-pw", "at least 10"),
        ("1234567890", "1234567890", "common"),
        (NEW_PASSWORD, "something-else-entirely", "differ"),
    ],
)
def test_reset_refuses_weak_or_mismatched_passwords_and_keeps_the_link(
    client, mailbox, me, password, confirm, message
):
    path = ask_reset(client, mailbox)
    response = client.post(path, data={"password": password, "confirm": confirm})
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert reset(client, path).status_code == 302  # the link was not spent


def test_a_spent_link_matches_no_row_in_the_conditional_update(app, client, mailbox, me):
    """The database enforces single use: the conditional UPDATE matches one row once."""
    token = ask_reset(client, mailbox).rsplit("/", 1)[1]
    account.reset_password(token, NEW_PASSWORD)
    with pytest.raises(tokens.LinkUsed):
        tokens.spend(token, "password_reset")
    record = db.session.scalar(select(AccountToken))
    spent_again = db.session.execute(
        update(AccountToken)
        .where(AccountToken.id == record.id, AccountToken.used_at.is_(None))
        .values(used_at=utcnow())
    )
    assert spent_again.rowcount == 0
    db.session.rollback()


def run_together(app, count: int, work: Callable[[int], str]) -> list[str]:
    """``work(i)`` in ``count`` threads released at once, each with its own session."""
    barrier = threading.Barrier(count)

    def one(i: int) -> str:
        with app.app_context():
            barrier.wait()
            try:
                return work(i)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def needs_postgres(app) -> None:
    if app.config["BACKEND"] != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite serializes them)")


def test_concurrent_uses_of_one_reset_link_succeed_once(app, client, mailbox, me):
    needs_postgres(app)
    token = ask_reset(client, mailbox).rsplit("/", 1)[1]

    def attempt(i: int) -> str:
        try:
            account.reset_password(token, f"{NEW_PASSWORD}-{i}")
        except tokens.LinkUsed:
            return "used"
        return f"set-{i}"

    results = run_together(app, 4, attempt)
    winners = [r for r in results if r != "used"]
    assert len(winners) == 1 and results.count("used") == 3
    db.session.expire_all()  # the other threads wrote the row this session holds
    assert people.authenticate("me@example.com", f"{NEW_PASSWORD}-{winners[0][4:]}")


def test_a_reset_ends_every_earlier_session_and_remember_cookie(app, client, mailbox, me):
    laptop = app.test_client()
    login_response = laptop.post(
        "/login", data={"email": "me@example.com", "password": DEFAULT_PASSWORD, "remember": "y"}
    )
    assert login_response.status_code == 302
    remember = laptop.get_cookie("remember_token").value
    reset(client, ask_reset(client, mailbox))
    assert laptop.get("/dashboard").status_code == 302
    replay = app.test_client()
    replay.set_cookie("remember_token", remember)
    assert replay.get("/dashboard").headers["Location"].startswith("/login")


# --- password change ------------------------------------------------------------------------


def change_password(client, current: str, new: str = NEW_PASSWORD, confirm: str | None = None):
    return client.post(
        "/settings/account/password",
        data={"current_password": current, "new_password": new, "confirm": confirm or new},
    )


def test_change_password_needs_the_current_one_and_ends_other_sessions(app, client, auth, me):
    other = app.test_client()
    assert login(other, "me@example.com", DEFAULT_PASSWORD).status_code == 302
    auth.login("me@example.com")
    assert client.get("/settings/account").status_code == 200
    wrong = change_password(client, "not-my-password")
    assert wrong.status_code == 422 and "not right" in wrong.get_data(as_text=True)
    old_cookie = client.get_cookie("session").value
    done = change_password(client, DEFAULT_PASSWORD)
    assert done.status_code == 302
    assert client.get("/dashboard").status_code == 200  # this session carries on
    assert other.get("/dashboard").status_code == 302  # the other one is logged out
    stale = app.test_client()
    stale.set_cookie("session", old_cookie)
    assert stale.get("/dashboard").status_code == 302  # and so is this session's old cookie
    client.post("/logout")
    assert login(client, "me@example.com", NEW_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("new", "confirm", "message"),
    [
        ("short-pw", None, "at least 10"),
        ("qwertyuiop", None, "common"),
        (NEW_PASSWORD, "another-passphrase", "differ"),
        (DEFAULT_PASSWORD, None, "must differ"),
    ],
)
def test_change_password_refuses_bad_new_passwords(client, auth, me, new, confirm, message):
    auth.login("me@example.com")
    response = change_password(client, DEFAULT_PASSWORD, new, confirm)
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert people.authenticate("me@example.com", DEFAULT_PASSWORD) is not None


def test_account_page_needs_login_and_is_a_settings_tab(client, auth, me):
    assert client.get("/settings/account").headers["Location"].startswith("/login")
    auth.login("me@example.com")
    page = client.get("/settings/departments").get_data(as_text=True)
    assert 'href="/settings/account"' in page


# --- email change ---------------------------------------------------------------------------


def test_email_change_takes_effect_when_the_new_address_confirms(client, auth, mailbox, me):
    auth.login("me@example.com")
    response = client.post(
        "/settings/account/email",
        data={"email": "New@Example.com", "current_password": DEFAULT_PASSWORD},
    )
    assert response.status_code == 302
    assert user_row("me@example.com") is not None  # nothing changed yet
    notice = mailbox.last("me@example.com")
    assert "new@example.com" in text_body(notice) and "/forgot-password" in text_body(notice)
    path = link(mailbox.last("new@example.com"), "/settings/account/email/")
    assert client.get(path).status_code == 302
    moved = user_row("new@example.com")
    assert moved is not None and moved.email_verified and user_row("me@example.com") is None
    assert client.get(path).status_code == 410
    client.post("/logout")
    assert login(client, "new@example.com", DEFAULT_PASSWORD).status_code == 302


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("other@example.com", "not-my-password", "not right"),
        ("taken@example.com", DEFAULT_PASSWORD, "used by another account"),
        ("me@example.com", DEFAULT_PASSWORD, "already the address"),
        ("not-an-email", DEFAULT_PASSWORD, "Invalid email"),
    ],
)
def test_email_change_refusals_send_nothing(
    client, auth, mailbox, me, make_user, email, password, message
):
    make_user("taken@example.com")
    auth.login("me@example.com")
    response = client.post(
        "/settings/account/email", data={"email": email, "current_password": password}
    )
    assert response.status_code == 422 and message in response.get_data(as_text=True)
    assert mailbox.messages == []


def test_old_reset_links_die_when_the_email_changes(client, auth, mailbox, me):
    reset_path = ask_reset(client, mailbox)
    auth.login("me@example.com")
    client.post(
        "/settings/account/email",
        data={"email": "new@example.com", "current_password": DEFAULT_PASSWORD},
    )
    client.get(link(mailbox.last("new@example.com"), "/settings/account/email/"))
    assert client.get(reset_path).status_code == 410


# --- sign-up verification and the bonus -----------------------------------------------------


def signup(client, email: str = "new@example.com", organization: str = "Acme Labs"):
    response = client.post(
        "/signup",
        data={"email": email, "password": DEFAULT_PASSWORD, "organization": organization},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return db.session.scalar(select(Organization).where(Organization.name == organization))


def bonus_rows(organization_id: int) -> list[LedgerEntry]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(LedgerEntry).where(
                LedgerEntry.organization_id == organization_id,
                LedgerEntry.kind == "signup_bonus",
            )
        )
    )


def test_bonus_is_granted_once_when_the_link_is_followed(app, client, mailbox):
    organization = signup(client)
    organization_id = organization.id
    assert bonus_rows(organization_id) == []
    dashboard = client.get("/dashboard").get_data(as_text=True)
    assert 'data-testid="verify-banner"' in dashboard and "Resend verification email" in dashboard
    response = verify_by_email(client, mailbox, "new@example.com")
    assert response.status_code == 302
    rows = bonus_rows(organization_id)
    assert [row.amount for row in rows] == [credits(app.config["PORTAL_SIGNUP_CREDITS"])]
    assert rows[0].source_ref == f"signup:{organization_id}"
    assert 'data-testid="verify-banner"' not in client.get("/dashboard").get_data(as_text=True)
    # The same link again, and a second (resent) link: still one bonus.
    assert verify_by_email(client, mailbox, "new@example.com").status_code == 410
    assert len(bonus_rows(organization_id)) == 1


def test_two_verification_links_grant_one_bonus(client, mailbox):
    organization_id = signup(client).id
    first = link(mailbox.last("new@example.com"), "/verify-email/")
    assert client.post("/verify-email/resend").status_code == 302
    second = link(mailbox.last("new@example.com"), "/verify-email/")
    assert first != second and len(mailbox.to("new@example.com")) == 2
    assert client.get(first).status_code == 302
    # Already verified: resending sends nothing more.
    client.post("/verify-email/resend")
    assert len(mailbox.to("new@example.com")) == 2
    people.find_user("new@example.com").email_verified_at = None  # as if verified elsewhere
    db.session.commit()
    assert client.get(second).status_code == 302
    assert len(bonus_rows(organization_id)) == 1


def test_concurrent_verifications_grant_one_bonus(app, client, mailbox):
    needs_postgres(app)
    organization_id = signup(client).id
    client.post("/verify-email/resend")
    paths = [link(m, "/verify-email/") for m in mailbox.to("new@example.com")]
    assert len(set(paths)) == 2

    def verify(i: int) -> str:
        account.verify_email(paths[i].rsplit("/", 1)[1])
        return "verified"

    assert run_together(app, 2, verify) == ["verified", "verified"]
    assert len(bonus_rows(organization_id)) == 1


def test_unverified_user_can_log_in_and_resend(client, mailbox):
    signup(client)
    client.post("/logout")
    assert login(client, "new@example.com", DEFAULT_PASSWORD).status_code == 302
    assert client.post("/verify-email/resend").status_code == 302
    assert len(mailbox.to("new@example.com")) == 2


def test_with_verification_off_the_bonus_comes_at_signup(app, client, mailbox):
    app.config["PORTAL_SIGNUP_REQUIRE_VERIFICATION"] = False
    organization_id = signup(client).id
    assert len(bonus_rows(organization_id)) == 1
    verify_by_email(client, mailbox, "new@example.com")
    assert len(bonus_rows(organization_id)) == 1


def test_demo_users_are_verified(runner, app):
    result = runner.invoke(args=["demo"])
    assert result.exit_code == 0, result.output
    users = db.session.scalars(select(User)).all()
    assert users and all(user.email_verified for user in users)


# --- the services alone, without HTTP --------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("nine-char", "at least 10 characters"),
        ("x" * 201, "at most 200 characters"),
        ("1234567890", "most common"),
        ("  QWERTYUIOP ", "most common"),
        ("iloveyou12", "most common"),
        ("correct-horse-9", None),
        ("ten chars!", None),
    ],
)
def test_password_policy(password, problem):
    from portal.auth.passwords import password_problem

    found = password_problem(password)
    assert (found is None) if problem is None else (problem in found)


def test_the_common_password_list_is_the_shipped_ten_thousand():
    from portal.auth.passwords import common_passwords

    words = common_passwords()
    assert 9_990 <= len(words) <= 10_000
    assert {"123456", "password", "qwertyuiop", "1234567890"} <= words
    assert not any(word.startswith("# ") for word in words)


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({}, tokens.LinkNotValid, "not valid"),
        ({"used_at": utcnow()}, tokens.LinkUsed, "already used"),
        ({"expires_at": utcnow() - timedelta(seconds=1)}, tokens.LinkExpired, "expired"),
    ],
)
def test_links_say_why_they_do_not_work(me, change, error, words):
    token = tokens.issue(me, "password_reset", me.email)
    db.session.commit()
    if change:
        db.session.execute(update(AccountToken).values(**change))
        db.session.commit()
    else:
        token = token + "x"  # one character off
    with pytest.raises(error) as raised:
        tokens.spend(token, "password_reset")
    assert words in raised.value.message
    assert type(raised.value) is error


def test_a_link_of_one_kind_does_not_work_for_another(me):
    token = tokens.issue(me, "email_verify", me.email)
    db.session.commit()
    with pytest.raises(tokens.LinkNotValid):
        account.reset_password(token, NEW_PASSWORD)


def test_reset_password_service_ends_sessions_and_refuses_weak_passwords(me):
    version = me.session_version
    token = tokens.issue(me, "password_reset", me.email)
    db.session.commit()
    with pytest.raises(InvalidRequest):
        account.reset_password(token, "password12")
    user = account.reset_password(token, NEW_PASSWORD)
    assert user.session_version == version + 1
    assert people.user_for_login_id(f"{user.id}:{version}:old") is None
    assert people.user_for_login_id(f"{user.id}:{version + 1}:new").login_nonce == "new"


def test_login_page_leads_to_the_forgot_password_form(client):
    assert 'href="/forgot-password"' in client.get("/login").get_data(as_text=True)
    page = client.get("/forgot-password")
    assert page.status_code == 200 and 'name="email"' in page.get_data(as_text=True)
    invalid = client.post("/forgot-password", data={"email": "not-an-address"})
    assert invalid.status_code == 422 and 'id="email-error"' in invalid.get_data(as_text=True)
