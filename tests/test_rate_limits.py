"""Rate limits: logins per account and address, sign-up-class forms, the API per key and
per address for wrong keys; on per-process memory and on a real Redis; Redis outages."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from limits import parse
from sqlalchemy import func, select

from portal import create_app, limits
from portal.auth import service as people
from portal.client import CreditClient, RateLimitedError
from portal.config import load_config
from portal.credits.models import Organization
from portal.extensions import db
from tests.conftest import DEFAULT_PASSWORD, REDIS_URL, assert_error
from tests.live import free_port

ADDRESS_A = {"REMOTE_ADDR": "198.51.100.1"}
ADDRESS_B = {"REMOTE_ADDR": "198.51.100.2"}
ADDRESS_C = {"REMOTE_ADDR": "198.51.100.3"}
ADDRESS_D = {"REMOTE_ADDR": "198.51.100.4"}


def post_login(client: FlaskClient, email: str, password: str, environ: dict[str, str]):
    return client.post("/login", data={"email": email, "password": password}, environ_base=environ)


def retry_after(response: Any, window: int) -> int:
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= window, seconds
    return seconds


def org_count() -> int:
    count = db.session.scalar(select(func.count()).select_from(Organization))
    db.session.rollback()
    return count


# --- login -----------------------------------------------------------------------------------


@pytest.mark.rate_limits(PORTAL_LOGIN_RATE_LIMIT="3 per minute")
def test_login_refused_past_the_limit_even_with_the_right_password(
    client: FlaskClient, make_user: Any, limit_storage: dict[str, Any]
) -> None:
    make_user("alice@example.com")
    for _ in range(3):
        assert (
            post_login(client, "alice@example.com", "wrong-password", ADDRESS_A).status_code == 422
        )

    refused = post_login(client, "alice@example.com", DEFAULT_PASSWORD, ADDRESS_A)

    assert refused.status_code == 429
    retry_after(refused, 60)
    page = refused.get_data(as_text=True)
    assert "Too many login attempts" in page and "Try again in" in page
    assert 'name="password"' in page  # the login form, re-rendered
    assert client.get("/dashboard").status_code == 302  # and nobody was logged in


ALICE, BOB = "alice@example.com", "bob@example.com"


@pytest.mark.parametrize(
    ("failed", "refused", "allowed", "reason"),
    [
        pytest.param(
            # The same account, typed differently, from other addresses: still that account.
            [(ALICE, ADDRESS_A), (" Alice@Example.COM", ADDRESS_B)],
            (ALICE, ADDRESS_C),
            (BOB, ADDRESS_D),
            "for this account",
            id="per-account",
        ),
        pytest.param(
            [("one@example.com", ADDRESS_A), ("two@example.com", ADDRESS_A)],
            (ALICE, ADDRESS_A),
            (ALICE, ADDRESS_B),
            "from your network",
            id="per-address",
        ),
    ],
)
@pytest.mark.rate_limits(PORTAL_LOGIN_RATE_LIMIT="2 per minute")
def test_login_counts_per_account_and_per_address(
    client: FlaskClient,
    make_user: Any,
    limit_storage: dict[str, Any],
    failed: list[tuple[str, dict[str, str]]],
    refused: tuple[str, dict[str, str]],
    allowed: tuple[str, dict[str, str]],
    reason: str,
) -> None:
    make_user(ALICE)
    make_user(BOB)
    for email, address in failed:
        assert post_login(client, email, "nope-nope", address).status_code == 422

    refusal = post_login(client, refused[0], DEFAULT_PASSWORD, refused[1])
    success = post_login(client, allowed[0], DEFAULT_PASSWORD, allowed[1])

    assert refusal.status_code == 429
    assert reason in refusal.get_data(as_text=True)
    assert success.status_code == 302


@pytest.mark.rate_limits(PORTAL_LOGIN_RATE_LIMIT="1 per second")
def test_login_allowed_again_once_the_window_passes(
    client: FlaskClient, make_user: Any, limit_storage: dict[str, Any]
) -> None:
    make_user("dave@example.com")
    assert post_login(client, "dave@example.com", "nope-nope", ADDRESS_A).status_code == 422
    assert post_login(client, "dave@example.com", DEFAULT_PASSWORD, ADDRESS_A).status_code == 429

    time.sleep(1.1)

    assert post_login(client, "dave@example.com", DEFAULT_PASSWORD, ADDRESS_A).status_code == 302


@pytest.mark.rate_limits(PORTAL_LOGIN_RATE_LIMIT="1 per minute")
def test_showing_the_login_form_is_not_an_attempt(client: FlaskClient, make_user: Any) -> None:
    make_user("erin@example.com")
    for _ in range(5):
        assert client.get("/login", environ_base=ADDRESS_A).status_code == 200

    assert post_login(client, "erin@example.com", DEFAULT_PASSWORD, ADDRESS_A).status_code == 302


# --- sign-up-class forms ---------------------------------------------------------------------


def signup(client: FlaskClient, n: int, environ: dict[str, str]):
    return client.post(
        "/signup",
        data={
            "email": f"new{n}@example.com",
            "password": DEFAULT_PASSWORD,
            "organization": f"Org {n}",
        },
        environ_base=environ,
    )


@pytest.mark.rate_limits(PORTAL_SIGNUP_RATE_LIMIT="2 per hour")
def test_signups_limited_per_address(client: FlaskClient, limit_storage: dict[str, Any]) -> None:
    for n in range(2):
        assert signup(client, n, ADDRESS_A).status_code == 302
        client.post("/logout")
    before = org_count()

    refused = signup(client, 2, ADDRESS_A)

    assert refused.status_code == 429
    assert retry_after(refused, 3600) > 3500
    assert "Too many sign-ups from your network" in refused.get_data(as_text=True)
    assert org_count() == before  # no organization, no free credits
    assert people.find_user("new2@example.com") is None
    assert signup(client, 3, ADDRESS_B).status_code == 302


@pytest.mark.rate_limits(PORTAL_SIGNUP_RATE_LIMIT="1 per hour")
def test_invitation_accepts_limited_per_address(
    client: FlaskClient, make_org: Any, make_user: Any
) -> None:
    from portal.auth import invitations

    # Invitations are bound to one address: the guest is invited to two organizations.
    tokens = []
    for number in (1, 2):
        owner = make_user(f"owner{number}@example.com", org=make_org())
        organization_id = owner.memberships[0].organization_id
        tokens.append(
            invitations.invite(organization_id, "member", "guest@example.com", owner).token
        )
    other_org = make_org()
    make_user("guest@example.com", org=other_org)
    # From the same address as the accepts: "strong" session protection ends a session whose
    # address changes.
    logged_in = client.post(
        "/login",
        data={"email": "guest@example.com", "password": DEFAULT_PASSWORD},
        environ_base=ADDRESS_A,
    )
    assert logged_in.status_code == 302

    first = client.post(f"/invite/{tokens[0]}", environ_base=ADDRESS_A)
    second = client.post(f"/invite/{tokens[1]}", environ_base=ADDRESS_A)

    assert first.status_code == 302
    assert second.status_code == 429
    retry_after(second, 3600)
    assert client.get(f"/invite/{tokens[1]}", environ_base=ADDRESS_A).status_code == 200


# --- the API ---------------------------------------------------------------------------------


@pytest.mark.rate_limits(PORTAL_API_RATE_LIMIT="3 per minute")
def test_api_limited_per_key(
    api: Any, make_org: Any, make_price: Any, db_state: Any, limit_storage: dict[str, Any]
) -> None:
    org, neighbour = make_org(), make_org()
    make_price("generate_content", 1)
    for _ in range(3):
        assert api.get("/balance", org).status_code == 200
    before = db_state()

    refused = api.post("/credits/deduct", org, json={"feature_key": "generate_content"})

    assert_error(refused, 429, "rate_limited")
    retry_after(refused, 60)
    assert db_state() == before  # refused before anything was charged
    assert api.get("/balance", neighbour).status_code == 200  # another key: its own budget


@pytest.mark.rate_limits(PORTAL_API_RATE_LIMIT="1 per second")
def test_api_key_allowed_again_once_the_window_passes(
    api: Any, make_org: Any, limit_storage: dict[str, Any]
) -> None:
    org = make_org()
    assert api.get("/balance", org).status_code == 200
    assert_error(api.get("/balance", org), 429, "rate_limited")

    time.sleep(1.1)

    assert api.get("/balance", org).status_code == 200


@pytest.mark.rate_limits(PORTAL_API_RATE_LIMIT="300 per minute")
def test_large_api_limits_are_sent_to_the_storage_in_batches(
    api: Any, make_org: Any, limit_storage: dict[str, Any]
) -> None:
    """300 a minute: batches of 3, so a process may serve 2 more before the storage says no."""
    org = make_org()
    answers = [api.get("/balance", org).status_code for _ in range(310)]

    assert answers == [200] * 302 + [429] * 8


@pytest.mark.parametrize(
    ("limit", "batch"), [("3/minute", 1), ("199/minute", 1), ("200/minute", 2), ("6000/minute", 20)]
)
def test_report_batches_stay_exact_for_small_limits(limit: str, batch: int) -> None:
    assert limits.report_batch(parse(limit)) == batch


def test_local_windows_forget_ended_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of addresses cannot grow a process's counters without bound."""
    monkeypatch.setattr(limits, "MAX_WINDOWS", 2)
    now = [1000.0]
    windows = limits.LocalWindows(clock=lambda: now[0])
    per_second = parse("1/second")
    for address in ("a", "b", "c"):
        assert windows.hit(per_second, address)
    now[0] += 2  # every window so far has ended
    assert windows.hit(per_second, "d")

    assert len(windows._windows) == 1
    assert windows.hit(per_second, "a")  # a new window, not the old count
    assert not windows.hit(per_second, "a")


@pytest.mark.rate_limits(PORTAL_API_UNAUTHENTICATED_RATE_LIMIT="2 per minute")
def test_wrong_api_keys_block_the_address(
    api: Any, make_org: Any, limit_storage: dict[str, Any]
) -> None:
    org = make_org()
    wrong = {"Authorization": "Bearer cpk_0000_guess"}
    for _ in range(2):
        assert_error(
            api.get("/balance", headers=wrong, environ_base=ADDRESS_A), 401, "unauthorized"
        )

    guessed = api.get("/balance", headers=wrong, environ_base=ADDRESS_A)
    right_key = api.get("/balance", org, environ_base=ADDRESS_A)

    assert_error(guessed, 429, "rate_limited")
    retry_after(guessed, 60)
    # A right guess from a blocked address learns nothing either: guessing is as slow as the limit.
    assert_error(right_key, 429, "rate_limited")
    assert api.get("/balance", org, environ_base=ADDRESS_B).status_code == 200


@pytest.mark.rate_limits(PORTAL_API_UNAUTHENTICATED_RATE_LIMIT="1 per minute")
def test_good_keys_do_not_count_against_the_address(api: Any, make_org: Any) -> None:
    org = make_org()
    for _ in range(5):
        assert api.get("/balance", org, environ_base=ADDRESS_A).status_code == 200
    assert api.get("/features/pricing?key=x", environ_base=ADDRESS_A).status_code == 404


@pytest.mark.rate_limits(PORTAL_API_RATE_LIMIT="1 per minute")
def test_the_python_client_reads_the_refusal_and_its_retry_after(app: Flask, make_org: Any) -> None:
    org = make_org()
    transport = httpx.WSGITransport(app=app)
    with CreditClient("http://portal.test", org.api_key, transport=transport, max_retries=0) as c:
        c.balance()
        with pytest.raises(RateLimitedError) as refused:
            c.balance()

    assert refused.value.code == "rate_limited"
    assert refused.value.retry_after is not None and 1 <= refused.value.retry_after <= 60


@pytest.mark.rate_limits(
    PORTAL_API_RATE_LIMIT="2 per minute", PORTAL_API_UNAUTHENTICATED_RATE_LIMIT="2 per minute"
)
def test_workers_share_the_counters_in_redis(app: Flask, make_org: Any, redis_prefix: str) -> None:
    """Two apps on one Redis prefix stand for two gunicorn workers."""
    config = {
        **app.config,
        "RATELIMIT_STORAGE_URI": REDIS_URL,
        "RATELIMIT_KEY_PREFIX": redis_prefix,
    }
    first, second = (create_app(config).test_client() for _ in "ab")
    org = make_org()
    db.session.rollback()  # SQLite: the other apps' sessions need the write lock
    wrong = {"Authorization": "Bearer cpk_0000_guess"}

    keyed = [
        w.get("/api/v1/balance", headers=org.headers).status_code for w in (first, second, first)
    ]
    for worker in (first, second):
        worker.get("/api/v1/balance", headers=wrong, environ_base=ADDRESS_A)
    third_guess = second.get("/api/v1/balance", headers=wrong, environ_base=ADDRESS_A)
    right_key_after = second.get("/api/v1/balance", headers=org.headers, environ_base=ADDRESS_A)

    assert keyed == [200, 200, 429]
    assert third_guess.status_code == 429
    assert right_key_after.status_code == 429


# --- client address --------------------------------------------------------------------------


@pytest.mark.rate_limits(PORTAL_API_UNAUTHENTICATED_RATE_LIMIT="1 per minute")
def test_forwarded_for_is_ignored_without_trusted_proxies(api: Any) -> None:
    api.get("/balance", headers={"X-Forwarded-For": "203.0.113.1"})

    spoofed = api.get("/balance", headers={"X-Forwarded-For": "203.0.113.2"})

    assert_error(spoofed, 429, "rate_limited")


@pytest.mark.rate_limits(
    PORTAL_API_UNAUTHENTICATED_RATE_LIMIT="1 per minute", PORTAL_TRUSTED_PROXIES=1
)
def test_forwarded_for_names_the_client_behind_a_trusted_proxy(api: Any) -> None:
    first = {"X-Forwarded-For": "203.0.113.1"}
    assert_error(api.get("/balance", headers=first), 401, "unauthorized")
    assert_error(api.get("/balance", headers=first), 429, "rate_limited")

    # Behind one proxy, the proxy's own address is the same; the client it names differs.
    other = api.get("/balance", headers={"X-Forwarded-For": "203.0.113.9, 203.0.113.2"})

    assert_error(other, 401, "unauthorized")


@pytest.mark.rate_limits(PORTAL_API_UNAUTHENTICATED_RATE_LIMIT="1 per minute")
def test_ipv6_clients_are_counted_per_64_block(api: Any) -> None:
    api.get("/balance", environ_base={"REMOTE_ADDR": "2001:db8:1:2::1"})

    neighbour = api.get("/balance", environ_base={"REMOTE_ADDR": "2001:db8:1:2:ffff::9"})
    elsewhere = api.get("/balance", environ_base={"REMOTE_ADDR": "2001:db8:1:3::1"})

    assert_error(neighbour, 429, "rate_limited")
    assert_error(elsewhere, 401, "unauthorized")


# --- defaults, configuration, the test suite itself ------------------------------------------


@pytest.mark.rate_limits
def test_the_real_defaults(app: Flask, client: FlaskClient, make_user: Any) -> None:
    """No limit overridden: 10 login attempts a minute, 5 sign-ups an hour per address."""
    make_user("frank@example.com")
    portal_limits = app.extensions[limits.EXTENSION]
    assert [str(item) for item in portal_limits.api_key_limits] == ["6000 per 1 minute"]
    assert [str(item) for item in portal_limits.unauthenticated_limits] == ["60 per 1 minute"]

    for _ in range(10):
        assert post_login(client, "frank@example.com", "nope-nope", ADDRESS_A).status_code == 422
    assert post_login(client, "frank@example.com", DEFAULT_PASSWORD, ADDRESS_A).status_code == 429

    for n in range(5):
        assert signup(client, n, ADDRESS_B).status_code == 302
        client.post("/logout")
    assert signup(client, 5, ADDRESS_B).status_code == 429


def test_the_suite_is_not_limited(client: FlaskClient, make_user: Any) -> None:
    make_user("grace@example.com")
    for _ in range(30):
        assert post_login(client, "grace@example.com", "nope-nope", ADDRESS_A).status_code == 422
    assert post_login(client, "grace@example.com", DEFAULT_PASSWORD, ADDRESS_A).status_code == 302


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "memory://"),
        ({"REDIS_URL": "redis://cache.internal:6380/2"}, "redis://cache.internal:6380/2"),
        (
            {"REDIS_URL": "redis://cache.internal:6380/2", "RATELIMIT_STORAGE_URI": "memory://"},
            "memory://",
        ),
    ],
)
def test_storage_defaults_to_redis_url_else_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, environment: dict[str, str], expected: str
) -> None:
    for name in ("REDIS_URL", "RATELIMIT_STORAGE_URI"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert load_config(str(tmp_path))["RATELIMIT_STORAGE_URI"] == expected


@pytest.mark.parametrize("setting", limits.SETTINGS)
def test_a_malformed_limit_stops_start_up(setting: str) -> None:
    with pytest.raises(ValueError):
        create_app(
            {"SQLALCHEMY_DATABASE_URI": "sqlite://", "RATELIMIT_ENABLED": True, setting: "lots"}
        )


# --- Redis outage ----------------------------------------------------------------------------


@pytest.mark.rate_limits(
    PORTAL_API_RATE_LIMIT="2 per minute", PORTAL_LOGIN_RATE_LIMIT="2 per minute"
)
def test_a_redis_outage_falls_back_to_memory(
    app: Flask,
    client: FlaskClient,
    api: Any,
    make_org: Any,
    make_user: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing listens on the port: the API and the login still answer, limited per process."""
    app_with_dead_redis = create_app(
        {
            **app.config,
            "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}",
        }
    )
    org = make_org()
    make_user("heidi@example.com")
    dead = app_with_dead_redis.test_client()
    caplog.set_level(logging.WARNING)

    answers = [dead.get("/api/v1/balance", headers=org.headers).status_code for _ in range(3)]
    logins = [
        post_login(dead, "heidi@example.com", "nope-nope", ADDRESS_A).status_code for _ in range(3)
    ]

    assert answers == [200, 200, 429]
    assert logins == [422, 422, 429]
    assert "rate limit storage unreachable" in caplog.text


@pytest.mark.rate_limits(PORTAL_SIGNUP_RATE_LIMIT="2 per hour")
def test_password_reset_requests_limited_per_address(
    client: FlaskClient, make_user: Any, mailbox: Any, limit_storage: dict[str, Any]
) -> None:
    make_user("alice@example.com")

    def request_reset(environ: dict[str, str]):
        return client.post(
            "/forgot-password", data={"email": "alice@example.com"}, environ_base=environ
        )

    assert [request_reset(ADDRESS_A).status_code for _ in range(2)] == [200, 200]
    refused = request_reset(ADDRESS_A)

    assert refused.status_code == 429
    retry_after(refused, 3600)
    assert "Too many password-reset requests" in refused.get_data(as_text=True)
    assert len(mailbox.to("alice@example.com")) == 2  # the refused request sent nothing
    assert request_reset(ADDRESS_B).status_code == 200


@pytest.mark.rate_limits(PORTAL_LOGIN_RATE_LIMIT="2 per minute")
def test_current_password_checks_limited_per_address(
    client: FlaskClient, make_user: Any, limit_storage: dict[str, Any]
) -> None:
    """The account page checks the current password: a stolen session cannot guess it fast."""
    make_user("alice@example.com")
    assert post_login(client, "alice@example.com", DEFAULT_PASSWORD, ADDRESS_A).status_code == 302

    def change_password(guess: str):
        return client.post(
            "/settings/account/password",
            data={
                "current_password": guess,
                "new_password": "a-new-long-passphrase-7",
                "confirm": "a-new-long-passphrase-7",
            },
            environ_base=ADDRESS_A,
        )

    assert [change_password(f"guess-{n}-wrong").status_code for n in range(2)] == [422, 422]
    refused = change_password(DEFAULT_PASSWORD)

    assert refused.status_code == 429
    assert people.authenticate("alice@example.com", DEFAULT_PASSWORD) is not None
