"""Fixtures: an app per test on SQLite and on PostgreSQL, a client, and builders.

Every test that uses ``app`` runs twice, once per database. The schema is built only by the
migrations: once per session for each backend (a migrated SQLite file is copied per test; the
PostgreSQL database is truncated between tests). PostgreSQL tests run whenever the server is
reachable; with ``CI=true`` an unreachable server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError

from portal import create_app, timeutil
from portal.credits import apikeys, organizations, pricing
from portal.credits.models import (
    CreditGrant,
    Department,
    IdempotencyRecord,
    LedgerEntry,
    Organization,
    Reservation,
)
from portal.extensions import db
from portal.money import parse_micros
from portal.timeutil import utcnow
from tests.contract_check import ContractCheckingClient

PG_ADMIN_URL = os.environ.get("PORTAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ("sqlite", "postgresql")
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379"
# The suite logs in and signs up hundreds of times from 127.0.0.1: apps it builds (and the
# gunicorn portals it starts, which inherit the environment) have rate limits off unless a
# test turns them on with ``@pytest.mark.rate_limits``.
os.environ.setdefault("RATELIMIT_ENABLED", "false")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "rate_limits(**settings): the app fixture counts rate limits (memory storage, or the "
        "test's limit_storage), with these settings",
    )


def postgres_available() -> bool:
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def require_postgres() -> None:
    """Skip without PostgreSQL on a laptop; fail in CI, where it must be there."""
    if not postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")


def _pg_url(database: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + database


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def migrate(app: Flask) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.sqlite3"
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    migrate(app)
    with app.app_context():
        db.engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated database of our own, dropped at the end: runs never collide."""
    require_postgres()
    name = f"portal_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    url = _pg_url(name)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url})
    migrate(app)
    with app.app_context():
        db.engine.dispose()
    yield url
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        path = tmp_path / "portal.sqlite3"
        shutil.copyfile(template, path)
        return f"sqlite:///{path}"
    return request.getfixturevalue("postgres_database")


def truncate_all(app: Flask) -> None:
    """Empty every table and restart its ids, as ``TRUNCATE … RESTART IDENTITY`` does.

    TRUNCATE of every table costs a few hundred milliseconds (new files, fsync) after each
    PostgreSQL test; DELETE with triggers off (which also steps past the append-only ledger
    guard) costs a few. Without the superuser right that needs, TRUNCATE it is.
    """
    with app.app_context():
        tables = [table.name for table in db.metadata.sorted_tables]
        try:
            with db.engine.begin() as conn:
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                for name in reversed(tables):
                    conn.execute(text(f'DELETE FROM "{name}"'))
                conn.execute(
                    text("SELECT setval(oid::regclass, 1, false) FROM pg_class WHERE relkind = 'S'")
                )
        except DBAPIError:
            listed = ", ".join(f'"{name}"' for name in tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {listed} RESTART IDENTITY CASCADE"))


def assert_invariants() -> None:
    """For every organization: balance = sum of its ledger = its grants' credits − debt, holds
    fit inside the balance and are what the grants hold; every grant adds up (the database
    checks that too) and no expired grant keeps spendable credits once swept."""
    ledger_sums = dict(
        db.session.execute(
            select(LedgerEntry.organization_id, func.sum(LedgerEntry.amount)).group_by(
                LedgerEntry.organization_id
            )
        ).all()
    )
    open_holds = dict(
        db.session.execute(
            select(Reservation.organization_id, func.sum(Reservation.amount))
            .where(Reservation.status == "open")
            .group_by(Reservation.organization_id)
        ).all()
    )
    in_grants = {
        org_id: (int(remaining), int(held))
        for org_id, remaining, held in db.session.execute(
            select(
                CreditGrant.organization_id,
                func.sum(CreditGrant.remaining),
                func.sum(CreditGrant.held),
            ).group_by(CreditGrant.organization_id)
        ).all()
    }
    for org in db.session.scalars(select(Organization)):
        remaining, held = in_grants.get(org.id, (0, 0))
        assert org.balance == (ledger_sums.get(org.id) or 0), org.slug
        assert org.balance == remaining + held - org.debt, org.slug
        assert org.debt >= 0, org.slug
        assert org.balance >= 0 or org.debt > 0, org.slug
        assert org.reserved >= 0, org.slug
        assert org.debt == 0 or org.reserved <= org.balance + org.debt, org.slug
        assert org.debt > 0 or org.reserved <= org.balance, org.slug
        assert org.reserved == (open_holds.get(org.id) or 0), org.slug
        assert held == org.reserved, org.slug
    for grant in db.session.scalars(select(CreditGrant)):
        parts = (
            grant.remaining
            + grant.held
            + grant.consumed
            - grant.returned
            + grant.expired
            + grant.clawed_back
            + grant.frozen
        )
        assert grant.amount == parts, grant.id
        assert min(grant.remaining, grant.held, grant.frozen) >= 0, grant.id


@contextmanager
def postgres_app(database_url: str, **config: Any) -> Iterator[Flask]:
    """An app on the session's PostgreSQL database with its context pushed, for tests of real
    concurrency: invariants checked and the database truncated afterwards. ``TESTING`` keeps
    the Stripe sandbox's webhook worker off (it would deliver other tests' events)."""
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "TESTING": True, **config})
    ctx = app.app_context()
    ctx.push()
    try:
        yield app
        db.session.remove()
        assert_invariants()
    finally:
        db.session.remove()
        ctx.pop()
        truncate_all(app)
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis for rate-limit tests: skipped without it on a laptop, a failure in CI."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis is required in CI but unreachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, so parallel runs never share counters; its keys are
    deleted afterwards."""
    import redis

    prefix = f"test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield prefix
    connection = redis.Redis.from_url(redis_url)
    for key in connection.scan_iter(match=f"*{prefix}*"):
        connection.delete(key)
    connection.close()


@pytest.fixture(params=("memory", "redis"))
def limit_storage(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Run a rate-limit test on both storages: per-process memory and a real Redis."""
    if request.param == "memory":
        return {"RATELIMIT_STORAGE_URI": "memory://"}
    return {
        "RATELIMIT_STORAGE_URI": request.getfixturevalue("redis_url"),
        "RATELIMIT_KEY_PREFIX": request.getfixturevalue("redis_prefix"),
    }


def rate_limit_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("rate_limits")
    if marker is None:
        return {"RATELIMIT_ENABLED": False}
    storage = (
        request.getfixturevalue("limit_storage")
        if "limit_storage" in request.fixturenames
        else {"RATELIMIT_STORAGE_URI": "memory://"}
    )
    return {"RATELIMIT_ENABLED": True, **storage, **marker.kwargs}


@pytest.fixture
def app(database_url: str, backend: str, request: pytest.FixtureRequest) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            # Form tests post without tokens; tests marked ``csrf`` prove the refusals.
            "WTF_CSRF_ENABLED": request.node.get_closest_marker("csrf") is not None,
            "PASSWORD_HASH_FAST": True,
            **rate_limit_config(request),
        }
    )
    app.config["BACKEND"] = backend

    @app.before_request
    def forget_previous_requests_user() -> None:
        # The test's app context outlives each request, and Flask-Login caches the user in
        # ``g``: without this, a request would inherit the previous request's user instead of
        # loading its own from its cookies, as every request of a real server does.
        from flask import g

        g.pop("_login_user", None)

    ctx = app.app_context()
    ctx.push()
    try:
        yield app
        db.session.remove()
        if not request.node.get_closest_marker("allow_negative_balance"):
            assert_invariants()
    finally:
        db.session.remove()
        ctx.pop()
        if backend == "postgresql":
            truncate_all(app)
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    app.test_client_class = ContractCheckingClient  # /api/v1 answers checked against OpenAPI
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


def credits(value: str | int | Decimal) -> int:
    """Micro-credits from a human amount: credits('0.5') == 500_000."""
    return parse_micros(value if not isinstance(value, str) else Decimal(value), allow_zero=True)


def balance_row(organization_id: int) -> tuple[int, int]:
    """(balance, reserved) as stored right now, not as the session last saw them."""
    row = db.session.execute(
        select(Organization.balance, Organization.reserved).where(
            Organization.id == organization_id
        )
    ).one()
    db.session.rollback()
    return row.balance, row.reserved


def ledger_rows(organization_id: int) -> list[LedgerEntry]:
    """An organization's ledger, oldest first, as detached rows (no transaction left open)."""
    db.session.expire_all()
    rows = list(
        db.session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.organization_id == organization_id)
            .order_by(LedgerEntry.id)
        )
    )
    for row in rows:
        db.session.expunge(row)
    db.session.rollback()
    return rows


def newest_grant(organization_id: int) -> CreditGrant:
    """An organization's most recent grant, as stored right now."""
    db.session.expire_all()
    return db.session.scalars(
        select(CreditGrant)
        .where(CreditGrant.organization_id == organization_id)
        .order_by(CreditGrant.id.desc())
    ).first()


def assert_error(response: Any, status: int, code: str, **fields: Any) -> dict[str, Any]:
    """The contract's error shape: ``{"error": {"code", "message", ...fields}}``, nothing else."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert list(response.json) == ["error"]
    error = response.json["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    for name, value in fields.items():
        assert error[name] == value, name
    return error


@pytest.fixture
def db_state(app: Flask) -> Callable[[], dict[str, list[tuple]]]:
    """A snapshot of every row a credits operation could write: equal snapshots, nothing written."""

    def snapshot() -> dict[str, list[tuple]]:
        queries = {
            "ledger": select(LedgerEntry.id, LedgerEntry.amount).order_by(LedgerEntry.id),
            "organizations": select(
                Organization.id, Organization.balance, Organization.reserved
            ).order_by(Organization.id),
            "reservations": select(Reservation.id, Reservation.status).order_by(Reservation.id),
            "departments": select(
                Department.id,
                Department.monthly_limit,
                Department.used_this_month,
                Department.usage_month,
            ).order_by(Department.id),
            "idempotency": select(IdempotencyRecord.id, IdempotencyRecord.state).order_by(
                IdempotencyRecord.id
            ),
        }
        state = {name: [tuple(row) for row in db.session.execute(q)] for name, q in queries.items()}
        db.session.rollback()
        return state

    return snapshot


@pytest.fixture
def expire_hold(app: Flask) -> Callable[[int], None]:
    """Make a reservation lapse by moving its expiry into the past, straight in the database."""

    def expire(reservation_id: int) -> None:
        db.session.execute(
            update(Reservation)
            .where(Reservation.id == reservation_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        db.session.commit()

    return expire


class Clock:
    """A stopped "now" that tests move by hand: ``clock.advance(days=31)``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Stop the portal's clock. Modules import ``utcnow`` by name, so every loaded ``portal.*``
    module's own reference is replaced (``portal.timeutil``'s too, for modules loaded later)."""
    real = timeutil.utcnow
    stopped = Clock(real())
    for name, module in list(sys.modules.items()):
        if name.startswith("portal.") and getattr(module, "utcnow", None) is real:
            monkeypatch.setattr(module, "utcnow", stopped)
    return stopped


@dataclass
class OrgFixture:
    """An organization made by ``make_org``; ids are kept as plain values so the fixture
    survives the session being removed at the end of each request."""

    id: int
    slug: str
    api_key: str

    @property
    def organization(self) -> Organization:
        return db.session.get(Organization, self.id)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@pytest.fixture
def make_org(app: Flask) -> Callable[..., OrgFixture]:
    counter = iter(range(1, 10_000))

    def build(balance: str | int | Decimal = 100, slug: str | None = None) -> OrgFixture:
        slug = slug or f"org-{next(counter)}"
        organization = organizations.create_organization(slug, slug.title(), credits(balance))
        key = apikeys.create_api_key(organization.id, "test key")
        return OrgFixture(organization.id, organization.slug, key.secret)

    return build


@pytest.fixture
def make_price(app: Flask) -> Callable[..., Any]:
    def build(
        feature_key: str = "seedream_text_to_image",
        credits_per_unit: str | int | Decimal = 5,
        *,
        category: str = "Image Generation",
        unit: str = "call",
        active: bool = True,
    ):
        return pricing.set_price(
            pricing.PriceSpec(
                feature_key,
                credits(credits_per_unit),
                category=category,
                unit=unit,
                active=active,
            )
        )

    return build


class Api:
    """JSON calls against /api/v1 with an organization's key."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def call(self, method: str, path: str, org: OrgFixture | None = None, **kwargs: Any):
        headers = dict(kwargs.pop("headers", {}))
        if org is not None:
            headers.update(org.headers)
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def get(self, path: str, org: OrgFixture | None = None, **kwargs: Any):
        return self.call("GET", path, org, **kwargs)

    def post(self, path: str, org: OrgFixture | None = None, **kwargs: Any):
        return self.call("POST", path, org, **kwargs)

    def put(self, path: str, org: OrgFixture | None = None, **kwargs: Any):
        return self.call("PUT", path, org, **kwargs)


@pytest.fixture
def api(client: FlaskClient) -> Api:
    return Api(client)


DEFAULT_PASSWORD = "correct-horse-9"


@pytest.fixture
def make_user(app: Flask) -> Callable[..., Any]:
    """A user, optionally with a role in an organization: make_user(org=org, role="member")."""
    from portal.auth import service as people

    counter = iter(range(1, 10_000))

    def build(
        email: str | None = None,
        *,
        password: str = DEFAULT_PASSWORD,
        org: OrgFixture | None = None,
        role: str = "owner",
        admin: bool = False,
    ):
        user = people.create_user(
            email or f"user{next(counter)}@example.com", password, is_admin=admin
        )
        if org is not None:
            people.add_membership(user, org.id, role)
        return user

    return build


class AuthActions:
    """Log in and out through the real forms, like a browser would."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, email: str, password: str = DEFAULT_PASSWORD):
        response = self.client.post("/login", data={"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return response

    def logout(self):
        return self.client.post("/logout")

    def signup(self, email: str, organization: str, password: str = DEFAULT_PASSWORD):
        return self.client.post(
            "/signup", data={"email": email, "password": password, "organization": organization}
        )


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Any]:
    """One real SMTP server (aiosmtpd) for the whole run; ``mailbox`` empties it per test."""
    from tests.mail_helpers import SMTPServer

    server = SMTPServer().start()
    yield server
    server.stop()


@pytest.fixture
def mailbox(app: Flask, smtp_server: Any) -> Any:
    """Point the app's mail at the local SMTP server; returns its ``Mailbox`` (empty)."""
    from portal.mail import init_mail

    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port, MAIL_BACKEND="smtp")
    init_mail(app)
    smtp_server.mailbox.clear()
    return smtp_server.mailbox


def verify_by_email(client: FlaskClient, mailbox: Any, address: str):
    """Follow the verification link that was mailed to ``address``."""
    from tests.mail_helpers import link

    return client.get(link(mailbox.last(address), "/verify-email/"))
