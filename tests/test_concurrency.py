"""Concurrency over real HTTP: a threaded server on PostgreSQL hammered by 32 client threads.

The in-process test client serializes requests, so it cannot show a race; these tests start a
real WSGI server on the test database and send requests from a thread pool, then check the
counts, the ledger and the invariants. One more test shows SQLite writers queueing instead of
failing with "database is locked".
"""

from __future__ import annotations

import itertools
import random
import shutil
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import simplejson
from flask import Flask
from sqlalchemy import func, select

from portal import create_app
from portal.credits import apikeys, organizations, pricing
from portal.credits.models import Department, LedgerEntry, Organization, Reservation
from portal.extensions import db
from tests.conftest import assert_invariants, credits, postgres_app
from tests.live import serve_in_thread as live_server

WORKERS = 32


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    org: Org
    body: dict[str, Any] | None = None
    idempotency_key: str | None = None
    tag: Any = None  # what the call was for, so results can be grouped afterwards


@dataclass(frozen=True)
class Reply:
    call: Call
    status: int
    headers: httpx.Headers
    text: str

    @property
    def json(self) -> dict[str, Any]:
        return simplejson.loads(self.text, use_decimal=True)

    @property
    def code(self) -> str | None:
        return self.json.get("error", {}).get("code") if self.status >= 400 else None


@dataclass(frozen=True)
class Org:
    id: int
    slug: str
    api_key: str


@pytest.fixture
def pg_app(postgres_database: str) -> Iterator[Flask]:
    """An app on the session's PostgreSQL database, truncated afterwards (never on SQLite)."""
    with postgres_app(postgres_database) as app:
        yield app


def new_org(balance: str | int) -> Org:
    slug = f"org-{uuid.uuid4().hex[:10]}"
    organization = organizations.create_organization(slug, slug, credits(balance))
    key = apikeys.create_api_key(organization.id, "concurrency")
    return Org(organization.id, slug, key.secret)


def set_price(feature_key: str, amount: str | int) -> None:
    pricing.set_price(pricing.PriceSpec(feature_key, credits(amount)))


def send(client: httpx.Client, call: Call) -> Reply:
    headers = {"Authorization": f"Bearer {call.org.api_key}"}
    if call.idempotency_key is not None:
        headers["Idempotency-Key"] = call.idempotency_key
    response = client.request(
        call.method,
        f"/api/v1{call.path}",
        headers=headers,
        content=None if call.body is None else simplejson.dumps(call.body, use_decimal=True),
    )
    return Reply(call, response.status_code, response.headers, response.text)


@contextmanager
def http_pool(base_url: str, workers: int = WORKERS) -> Iterator[Callable[..., list[Reply]]]:
    """``run(calls)`` sends every call from ``workers`` threads and returns the replies."""
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    with (
        httpx.Client(base_url=base_url, timeout=30, limits=limits) as client,
        ThreadPoolExecutor(workers) as pool,
    ):

        def run(calls: list[Call | Callable[[httpx.Client], Any]]) -> list[Any]:
            return list(
                pool.map(
                    lambda call: send(client, call) if isinstance(call, Call) else call(client),
                    calls,
                )
            )

        yield run


def fresh_balance(org: Org) -> tuple[int, int]:
    db.session.expire_all()
    row = db.session.execute(
        select(Organization.balance, Organization.reserved).where(Organization.id == org.id)
    ).one()
    return row.balance, row.reserved


def ledger(org: Org, kind: str | None = None) -> list[LedgerEntry]:
    db.session.expire_all()
    stmt = select(LedgerEntry).where(LedgerEntry.organization_id == org.id)
    if kind is not None:
        stmt = stmt.where(LedgerEntry.kind == kind)
    return list(db.session.scalars(stmt.order_by(LedgerEntry.id)))


def assert_no_server_errors(replies: list[Reply]) -> None:
    failures = [(reply.status, reply.text) for reply in replies if reply.status >= 500]
    assert not failures, failures[:3]


def test_thousand_credits_allow_exactly_thousand_deducts(pg_app: Flask) -> None:
    set_price("one_credit_call", 1)
    org = new_org(1_000)
    calls = [Call("POST", "/credits/deduct", org, {"feature_key": "one_credit_call"})] * 1_250

    with live_server(pg_app) as base_url, http_pool(base_url) as run:
        replies = run(calls)
        balance_reply = run([Call("GET", "/balance", org)])[0]

    assert_no_server_errors(replies)
    assert Counter(reply.status for reply in replies) == {201: 1_000, 402: 250}
    refused = [reply for reply in replies if reply.status == 402]
    assert {reply.code for reply in refused} == {"insufficient_credits"}
    successes = [reply.json for reply in replies if reply.status == 201]
    # Each success saw the balance its own debit left: the debits were strictly serialized.
    remaining = sorted(body["remaining_credits"] for body in successes)
    assert remaining == list(range(1_000))
    assert len({body["deduction_id"] for body in successes}) == 1_000
    assert balance_reply.json["balance"] == 0
    assert fresh_balance(org) == (0, 0)
    deductions = ledger(org, "deduct")
    assert len(deductions) == 1_000
    assert {entry.id for entry in deductions} == {body["deduction_id"] for body in successes}
    assert sum(entry.amount for entry in ledger(org)) == 0


def test_mixed_deducts_refunds_and_holds_keep_every_invariant(pg_app: Flask) -> None:
    set_price("five_credit_call", 5)
    set_price("one_credit_call", 1)
    org = new_org(200)
    rng = random.Random(20_240_601)
    deduct_five = Call("POST", "/credits/deduct", org, {"feature_key": "five_credit_call"})

    with live_server(pg_app) as base_url, http_pool(base_url) as run:
        first = run([deduct_five] * 20)
        deduction_ids = [reply.json["deduction_id"] for reply in first]
        raced_holds = [
            reply.json["reservation_id"]
            for reply in run(
                [Call("POST", "/credits/reservations", org, {"feature_key": "one_credit_call"})]
                * 10
            )
        ]

        def hold_then_settle(client: httpx.Client) -> list[Reply]:
            body = {"feature_key": "one_credit_call", "quantity": 3}
            held = send(client, Call("POST", "/credits/reservations", org, body, tag="hold"))
            if held.status != 201:
                return [held]
            path = f"/credits/reservations/{held.json['reservation_id']}"
            if rng.random() < 0.5:
                settle = Call(
                    "POST", f"{path}/capture", org, {"quantity": Decimal("1.5")}, tag="capture"
                )
            else:
                settle = Call("POST", f"{path}/release", org, tag="release")
            return [held, send(client, settle)]

        calls: list[Any] = []
        # Eight refunds of 1 credit race for each of ten 5-credit deductions: five may win.
        for deduction_id in deduction_ids[:10]:
            body = {"deduction_id": deduction_id, "amount": 1}
            calls += [Call("POST", "/credits/refund", org, body, tag=("unit", deduction_id))] * 8
        # Full and partial refunds race for the other ten.
        for deduction_id in deduction_ids[10:]:
            full = {"deduction_id": deduction_id}
            partial = {"deduction_id": deduction_id, "amount": 2}
            calls += [Call("POST", "/credits/refund", org, full, tag=("any", deduction_id))] * 3
            calls += [Call("POST", "/credits/refund", org, partial, tag=("any", deduction_id))] * 2
        # Capture and release race for the same open hold: exactly one may close it.
        for reservation_id in raced_holds:
            path = f"/credits/reservations/{reservation_id}"
            calls.append(Call("POST", f"{path}/capture", org, tag=("race", reservation_id)))
            calls.append(Call("POST", f"{path}/release", org, tag=("race", reservation_id)))
        calls += [Call("POST", "/credits/deduct", org, {"feature_key": "one_credit_call"})] * 150
        calls += [hold_then_settle] * 40
        rng.shuffle(calls)
        replies: list[Reply] = []
        for result in run(calls):
            replies.extend(result if isinstance(result, list) else [result])

    assert_no_server_errors(replies)
    expected_statuses = {
        "/credits/deduct": {201, 402},
        "/credits/refund": {200, 409, 422},
        "/credits/reservations": {201, 402},
    }
    for reply in replies:
        allowed = expected_statuses.get(reply.call.path, {200, 409})
        assert reply.status in allowed, (reply.call, reply.status, reply.text)

    refunds = [reply for reply in replies if reply.call.path == "/credits/refund"]
    for deduction_id in deduction_ids[:10]:
        mine = [reply for reply in refunds if reply.call.tag == ("unit", deduction_id)]
        assert Counter(reply.status for reply in mine) == {200: 5, 409: 3}
        assert {reply.code for reply in mine if reply.status == 409} == {"already_refunded"}
    refunded_per_deduction: Counter[int] = Counter()
    for entry in ledger(org, "refund"):
        refunded_per_deduction[entry.refund_of_id] += entry.amount
    assert set(refunded_per_deduction) <= set(deduction_ids)
    for deduction_id in deduction_ids:
        assert refunded_per_deduction[deduction_id] <= credits(5), deduction_id
    answered = sum(
        (reply.json["credits_refunded"] for reply in refunds if reply.status == 200), Decimal(0)
    )
    assert credits(answered) == sum(refunded_per_deduction.values())

    for reservation_id in raced_holds:
        pair = [reply for reply in replies if reply.call.tag == ("race", reservation_id)]
        assert sorted(reply.status for reply in pair) == [200, 409]
        assert [reply.code for reply in pair if reply.status == 409] == ["reservation_not_open"]
    captures = [reply for reply in replies if reply.status == 200 and "capture" in reply.call.path]
    capture_rows = [entry for entry in ledger(org, "deduct") if entry.reservation_id is not None]
    assert sorted(entry.id for entry in capture_rows) == sorted(
        reply.json["deduction_id"] for reply in captures
    )
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(Reservation)
            .where(Reservation.organization_id == org.id, Reservation.status == "open")
        )
        == 0
    )
    deducted = [reply for reply in replies if reply.call.path == "/credits/deduct"]
    plain_rows = [entry for entry in ledger(org, "deduct") if entry.reservation_id is None]
    assert len(plain_rows) == 20 + sum(reply.status == 201 for reply in deducted)
    balance, reserved = fresh_balance(org)
    assert reserved == 0
    assert balance == sum(entry.amount for entry in ledger(org))


def test_one_idempotency_key_from_sixteen_workers_charges_once(pg_app: Flask) -> None:
    set_price("one_credit_call", "1.25")
    org = new_org(100)
    workers = 16

    with live_server(pg_app) as base_url, http_pool(base_url, workers) as run:
        for round_number in range(5):
            key = f"retry-{round_number}"
            call = Call(
                "POST",
                "/credits/deduct",
                org,
                {"feature_key": "one_credit_call", "user": "u-1"},
                idempotency_key=key,
            )
            barrier = threading.Barrier(workers)

            def at_once(client: httpx.Client, call: Call = call, barrier=barrier) -> Reply:
                barrier.wait(timeout=10)
                return send(client, call)

            replies = run([at_once] * workers)
            assert_no_server_errors(replies)
            originals = [
                reply
                for reply in replies
                if reply.status == 201 and "Idempotent-Replayed" not in reply.headers
            ]
            assert len(originals) == 1, [(reply.status, reply.text) for reply in replies]
            for reply in replies:
                if reply is originals[0]:
                    continue
                if reply.status == 409:
                    assert reply.code == "idempotency_key_in_use"
                else:
                    assert reply.status == 201
                    assert reply.headers["Idempotent-Replayed"] == "true"
                    assert reply.text == originals[0].text
            # Once the first request finished, a retry is always a replay.
            again = run([call])[0]
            assert again.status == 201
            assert again.headers["Idempotent-Replayed"] == "true"
            assert again.text == originals[0].text

            deductions = ledger(org, "deduct")
            assert len(deductions) == round_number + 1
            assert deductions[-1].id == originals[0].json["deduction_id"]
            assert fresh_balance(org) == (credits(100) - (round_number + 1) * credits("1.25"), 0)


def test_department_limits_hold_under_concurrency(pg_app: Flask) -> None:
    set_price("one_credit_call", 1)
    org = new_org(1_000)

    with live_server(pg_app) as base_url, http_pool(base_url) as run:
        limits = run(
            [
                Call("PUT", "/departments/research/limit", org, {"monthly_limit": 50}),
                Call("PUT", "/departments/ops/limit", org, {"monthly_limit": 30}),
            ]
        )
        assert [reply.status for reply in limits] == [200, 200]

        def single(department: str) -> Call:
            body = {"feature_key": "one_credit_call", "department": department}
            return Call("POST", "/credits/deduct", org, body, tag=department)

        def batch(first: str, second: str) -> Call:
            lines = [
                {"feature_key": "one_credit_call", "department": name} for name in (first, second)
            ]
            return Call("POST", "/credits/deduct-batch", org, {"lines": lines}, tag="batch")

        calls = [single("research")] * 120 + [single("ops")] * 80
        # Lines in both orders: the service must lock departments in one order, or deadlock.
        calls += [batch("research", "ops"), batch("ops", "research")] * 20
        random.Random(7).shuffle(calls)
        replies = run(calls)
        listing = run([Call("GET", "/departments", org)])[0].json["data"]

    assert_no_server_errors(replies)
    assert {reply.status for reply in replies} <= {201, 402}
    refused = {reply.code for reply in replies if reply.status == 402}
    assert refused == {"department_limit_exceeded"}
    used = {row["name"]: row["used_this_month"] for row in listing}
    # Demand of single deducts alone exceeds each limit, so each fills up exactly.
    assert used == {"research": 50, "ops": 30}
    charged: Counter[str] = Counter()
    for reply in replies:
        if reply.status != 201:
            continue
        lines = reply.call.body["lines"] if reply.call.tag == "batch" else [reply.call.body]
        for line in lines:
            charged[line["department"]] += 1
    assert charged == {"research": 50, "ops": 30}
    rows = {
        department.name: department.id
        for department in db.session.scalars(
            select(Department).where(Department.organization_id == org.id)
        )
    }
    per_department = Counter(entry.department_id for entry in ledger(org, "deduct"))
    assert per_department == {rows["research"]: 50, rows["ops"]: 30}
    assert fresh_balance(org) == (credits(920), 0)


def test_sqlite_writers_queue_instead_of_failing(sqlite_template: Path, tmp_path: Path) -> None:
    path = tmp_path / "portal.sqlite3"
    shutil.copyfile(sqlite_template, path)
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "TESTING": True})
    threads, per_thread = 8, 25
    with app.app_context():
        set_price("one_credit_call", 1)
        org = new_org(1_000)
    keys = itertools.count()

    def writer(_: int) -> list[tuple[int, str]]:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {org.api_key}"}
        results = []
        for _ in range(per_thread):
            key = {"Idempotency-Key": f"k-{next(keys)}"}
            response = client.post(
                "/api/v1/credits/deduct",
                json={"feature_key": "one_credit_call"},
                headers=headers | key,
            )
            results.append((response.status_code, response.get_data(as_text=True)))
            held = client.post(
                "/api/v1/credits/reservations",
                json={"feature_key": "one_credit_call"},
                headers=headers,
            )
            results.append((held.status_code, held.get_data(as_text=True)))
            released = client.post(
                f"/api/v1/credits/reservations/{held.json['reservation_id']}/release",
                headers=headers,
            )
            results.append((released.status_code, released.get_data(as_text=True)))
        return results

    with ThreadPoolExecutor(threads) as pool:
        results = [result for batch in pool.map(writer, range(threads)) for result in batch]

    failures = [result for result in results if result[0] not in (200, 201)]
    assert not failures, failures[:3]
    assert len(results) == threads * per_thread * 3
    with app.app_context():
        assert fresh_balance(org) == (credits(1_000 - threads * per_thread), 0)
        assert len(ledger(org, "deduct")) == threads * per_thread
        assert_invariants()
        db.engine.dispose()
