"""Fixtures of the client tests: one live gunicorn portal per backend for the whole session.

Starting gunicorn and migrating costs seconds, so a server lives for the session and each test
gets an organization (and API key) of its own instead of a fresh database: tests stay
independent without paying for a server each. PostgreSQL gets a database of its own rather
than ``postgres_database``, because the ``app`` fixture truncates that one after every test,
which would wipe the live server's data if the suites interleave.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from portal.client import CreditClient, Transaction, reset_default
from tests.client.faults import FaultProxy
from tests.conftest import BACKENDS, PG_ADMIN_URL, require_postgres
from tests.live import (
    LivePortal,
    OrgKey,
    Seeder,
    create_postgres_database,
    drop_postgres_database,
    start_portal,
)


@pytest.fixture(scope="session", params=BACKENDS)
def live_portal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LivePortal]:
    backend = request.param
    workdir = tmp_path_factory.mktemp(f"live-{backend}")
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = workdir / "portal.sqlite3"
        shutil.copyfile(template, path)
        database_url = f"sqlite:///{path}"
    else:
        require_postgres()
        database_url = create_postgres_database(PG_ADMIN_URL)
    seeder = Seeder(database_url)
    seeder.catalogue()
    portal = start_portal(backend, database_url, workdir / "gunicorn.log")
    portal.seeder = seeder
    try:
        yield portal
    finally:
        portal.stop()
        seeder.close()
        if backend == "postgresql":
            drop_postgres_database(PG_ADMIN_URL, database_url)


@pytest.fixture
def seeder(live_portal: LivePortal) -> Seeder:
    assert live_portal.seeder is not None
    return live_portal.seeder


@pytest.fixture
def org(seeder: Seeder) -> OrgKey:
    """A fresh organization with 1,000 credits and an API key."""
    return seeder.org(Decimal(1000))


def make_client(url: str, api_key: str, **options: object) -> CreditClient:
    settings: dict[str, object] = {"timeout": 5.0, "max_retries": 2, "backoff": 0.01}
    settings.update(options)
    return CreditClient(url, api_key, **settings)  # type: ignore[arg-type]


@pytest.fixture
def client(live_portal: LivePortal, org: OrgKey) -> Iterator[CreditClient]:
    with make_client(live_portal.url, org.api_key) as credit_client:
        yield credit_client


@pytest.fixture
def proxy(live_portal: LivePortal) -> Iterator[FaultProxy]:
    with FaultProxy(live_portal.url) as fault_proxy:
        yield fault_proxy


@pytest.fixture(autouse=True)
def _no_default_client() -> Iterator[None]:
    """``configure()`` is process-wide: no test may leak its default into the next."""
    reset_default()
    yield
    reset_default()


def ledger(credit_client: CreditClient) -> list[Transaction]:
    """The organization's ledger, oldest first, read through the API."""
    return list(reversed(list(credit_client.transactions())))


def charges(credit_client: CreditClient) -> list[Transaction]:
    return [row for row in ledger(credit_client) if row.kind == "deduct"]


def assert_books_balance(credit_client: CreditClient) -> None:
    """The organization's balance equals the sum of its ledger, as the API reports both."""
    rows = ledger(credit_client)
    assert credit_client.balance().balance == sum((row.amount for row in rows), Decimal(0))
    assert rows[-1].balance_after == credit_client.balance().balance
