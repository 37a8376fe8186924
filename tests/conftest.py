"""Fixtures: an app per test on SQLite and on PostgreSQL, a client, and builders.

Every test that uses ``app`` runs twice, once per database. The schema is built only by the
migrations: once per session for each backend (a migrated SQLite file is copied per test; the
PostgreSQL database is truncated between tests). PostgreSQL tests run whenever the server is
reachable; with ``CI=true`` an unreachable server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from portal import create_app
from portal.credits import apikeys, organizations, pricing
from portal.credits.models import LedgerEntry, Organization, Reservation
from portal.extensions import db
from portal.money import parse_micros

PG_ADMIN_URL = os.environ.get("PORTAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ("sqlite", "postgresql")


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
    with app.app_context():
        tables = ", ".join(f'"{table.name}"' for table in db.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def assert_invariants() -> None:
    """For every organization: balance = sum of its ledger, and holds fit inside the balance."""
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
    for org in db.session.scalars(select(Organization)):
        assert org.balance == (ledger_sums.get(org.id) or 0), org.slug
        assert org.balance >= 0, org.slug
        assert 0 <= org.reserved <= org.balance, org.slug
        assert org.reserved == (open_holds.get(org.id) or 0), org.slug


@pytest.fixture
def app(database_url: str, backend: str, request: pytest.FixtureRequest) -> Iterator[Flask]:
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            # Form tests post without tokens; tests marked ``csrf`` prove the refusals.
            "WTF_CSRF_ENABLED": request.node.get_closest_marker("csrf") is not None,
        }
    )
    app.config["BACKEND"] = backend
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
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


def credits(value: str | int | Decimal) -> int:
    """Micro-credits from a human amount: credits('0.5') == 500_000."""
    return parse_micros(value if not isinstance(value, str) else Decimal(value), allow_zero=True)


@dataclass
class OrgFixture:
    organization: Organization
    api_key: str

    @property
    def id(self) -> int:
        return self.organization.id

    @property
    def slug(self) -> str:
        return self.organization.slug

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
        return OrgFixture(organization, key.secret)

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
