"""What the Python client costs on top of a raw HTTP call: balance() and deduct() round trips.

    python -m tests.benchmarks.bench_client [--backend postgresql|sqlite] [--requests 2000]

Serves the portal with gunicorn over a database of its own (dropped at the end), then times,
one request at a time over a kept-alive connection, the client's ``balance()`` and ``deduct()``
against the same requests sent with a bare ``httpx.Client`` (same headers, same JSON body, a
fresh ``Idempotency-Key`` each, the body read and parsed with ``Decimal``). The two are
interleaved call by call so that both see the same server and machine load. The difference is
the client's own work: building the call, mapping the answer to a typed result; a second
table measures just that, over an in-memory transport.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import httpx

from portal.client import CreditClient
from tests.conftest import PG_ADMIN_URL, postgres_available
from tests.live import (
    Seeder,
    create_postgres_database,
    drop_postgres_database,
    migrate,
    start_portal,
)

FEATURE = "bench_call"
Timings = dict[str, tuple[list[float], list[float]]]


def percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def measure(
    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]], requests: int
) -> Timings:
    """Time each (raw, client) pair, alternating, after a warm-up; milliseconds."""
    timings: Timings = {}
    for name, (raw, client) in pairs.items():
        for _ in range(min(200, requests)):
            raw(), client()
        raw_ms: list[float] = []
        client_ms: list[float] = []
        for _ in range(requests):
            for call, sink in ((raw, raw_ms), (client, client_ms)):
                started = time.perf_counter()
                call()
                sink.append((time.perf_counter() - started) * 1000)
        timings[name] = (raw_ms, client_ms)
    return timings


def report(where: str, requests: int, timings: Timings) -> None:
    print(f"\nclient round trips vs raw httpx, {where}, {requests:,} calls each")
    header = f"{'call':<10} {'via':<14} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}"
    print(header)
    print("-" * len(header))
    for name, (raw_ms, client_ms) in timings.items():
        for via, samples in (("raw httpx", raw_ms), ("CreditClient", client_ms)):
            print(
                f"{name:<10} {via:<14} {percentile(samples, 50):>8.3f} "
                f"{percentile(samples, 99):>8.3f} {statistics.fmean(samples):>8.3f}"
            )
        overhead = (percentile(client_ms, 50) - percentile(raw_ms, 50)) * 1000
        print(f"{name:<10} {'overhead p50':<14} {overhead:>7.0f} µs")


def offline(requests: int) -> Timings:
    """The same pairs over an in-memory transport: the client's own work, free of network noise."""
    answers = {
        "/api/v1/balance": b'{"organization":"o","balance":10.5,"reserved":0,"available":10.5}',
        "/api/v1/credits/deduct": (
            b'{"deduction_id":1,"feature_key":"bench_call","quantity":1,'
            b'"credits_deducted":0.001,"remaining_credits":10.499}'
        ),
    }

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answers[request.url.path])

    body = json.dumps({"feature_key": FEATURE, "quantity": 1}).encode()
    transport = httpx.MockTransport(answer)
    with (
        httpx.Client(base_url="http://portal", transport=transport) as raw,
        CreditClient("http://portal", "key", transport=transport) as client,
    ):
        return measure(
            {
                "balance": (
                    lambda: json.loads(raw.get("/api/v1/balance").content, parse_float=Decimal),
                    client.balance,
                ),
                "deduct": (
                    lambda: json.loads(
                        raw.post(
                            "/api/v1/credits/deduct",
                            content=body,
                            headers={"Idempotency-Key": str(uuid.uuid4())},
                        ).content,
                        parse_float=Decimal,
                    ),
                    lambda: client.deduct(FEATURE),
                ),
            },
            requests,
        )


def run(backend: str, requests: int) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        if backend == "postgresql":
            database_url = create_postgres_database(PG_ADMIN_URL, prefix="portal_bench_client")
        else:
            database_url = f"sqlite:///{Path(workdir) / 'bench.sqlite3'}"
            migrate(database_url)
        seeder = Seeder(database_url)
        portal = None
        try:
            seeder.price(FEATURE, "0.001")
            org = seeder.org(Decimal(1_000_000))
            portal = start_portal(backend, database_url, Path(workdir) / "gunicorn.log", workers=2)
            headers = {"Authorization": f"Bearer {org.api_key}", "Accept": "application/json"}
            body = json.dumps({"feature_key": FEATURE, "quantity": 1}).encode()
            with (
                httpx.Client(base_url=portal.url, headers=headers, timeout=10) as raw,
                CreditClient(portal.url, org.api_key) as client,
            ):

                def raw_balance() -> object:
                    response = raw.get("/api/v1/balance")
                    response.raise_for_status()
                    return json.loads(response.content, parse_float=Decimal)

                def raw_deduct() -> object:
                    response = raw.post(
                        "/api/v1/credits/deduct",
                        content=body,
                        headers={
                            "Content-Type": "application/json",
                            "Idempotency-Key": str(uuid.uuid4()),
                        },
                    )
                    response.raise_for_status()
                    return json.loads(response.content, parse_float=Decimal)

                timings = measure(
                    {
                        "balance": (raw_balance, client.balance),
                        "deduct": (raw_deduct, lambda: client.deduct(FEATURE)),
                    },
                    requests,
                )
            report(f"gunicorn on {backend}", requests, timings)
            report("an in-memory transport (no network)", requests, offline(requests))
        finally:
            if portal is not None:
                portal.stop()
            seeder.close()
            if backend == "postgresql":
                drop_postgres_database(PG_ADMIN_URL, database_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default=None)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    backend = args.backend or ("postgresql" if postgres_available() else "sqlite")
    run(backend, args.requests)


if __name__ == "__main__":
    main()
