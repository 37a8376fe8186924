"""Deduct throughput over HTTP (gunicorn on PostgreSQL) next to the same transaction sent raw.

    python -m tests.benchmarks.bench_deduct [--duration 10] [--clients 16] [--workers 2 --threads 8]

It makes its own PostgreSQL database (dropped at the end), migrates it with ``flask db
upgrade``, seeds one hot organization and 1,000 others with the credits services, serves
``wsgi:app`` with gunicorn on loopback and drives ``POST /api/v1/credits/deduct`` from
``--clients`` concurrent clients for a fixed time:

- scenario A: every request charges the one hot organization (all writers queue on its row);
- scenario B: each request charges a random one of the 1,000 organizations.

Then it sends the transaction the service runs (conditional ``UPDATE organizations …
RETURNING``, ``INSERT INTO ledger_entries``, ``COMMIT``) straight to PostgreSQL with psycopg
from as many threads: the physical limit the HTTP figure is compared with.

The load comes from separate processes (so the client never shares a GIL with the measured
side), each running threads over kept-alive sockets with pre-built requests and a minimal
response parser: about 0.1 ms of client CPU per request (the table shows it, next to the CPU
gunicorn spent per request).
Goal (issue 2): hot-organization HTTP >= 60% of raw, p99 <= 50 ms at 16 concurrent clients.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import psycopg

from tests.live import ROOT, drop_postgres_database, start_portal

ADMIN_URL = os.environ.get("PORTAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FEATURE = "bench_call"
PRICE_MICROS = 1_000  # 0.001 credits a call: no balance runs dry during a run
HOT_BALANCE = 10_000_000  # credits
OTHER_BALANCE = 100_000
DEDUCT_PATH = "/api/v1/credits/deduct"
DEDUCT_BODY = b'{"feature_key":"bench_call"}'
# The served portal counts rate limits as in production (in Redis when REDIS_URL is set), but
# with a limit no run reaches: the figure is the cost of counting, not a wall of 429s.
os.environ.setdefault("PORTAL_API_RATE_LIMIT", "100000000 per minute")

# What portal.credits.service.deduct sends for one line without department, as plain SQL.
DEBIT_SQL = (
    "UPDATE organizations SET balance = balance - %(cost)s "
    "WHERE id = %(org)s AND balance - reserved >= %(cost)s RETURNING balance, reserved"
)
APPEND_SQL = (
    "INSERT INTO ledger_entries (organization_id, kind, amount, balance_after, feature_key, "
    "unit_price, quantity, created_at) VALUES (%(org)s, 'deduct', %(amount)s, %(after)s, "
    "%(feature)s, %(price)s, %(quantity)s, %(now)s) RETURNING id"
)


# --- the load: runs in child processes -------------------------------------------------------


@dataclass
class Load:
    """One client process's share: ``threads`` clients, each picking a random target."""

    kind: str  # "http" or "raw"
    targets: list  # request bytes (http) or organization ids (raw)
    threads: int
    start_at: float  # wall-clock seconds: when to begin, warm up until, and stop
    measure_from: float
    stop_at: float
    address: tuple[str, int] | None = None
    database_url: str | None = None


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)  # inside the measured window
    succeeded: int = 0  # including the warm-up: every success wrote one ledger row
    failures: Counter = field(default_factory=Counter)
    cpu_seconds: float = 0.0  # this process's CPU time inside the measured window


def _read_response(stream) -> tuple[int, bool]:
    """Status and whether the server will close; reads the body so the socket can be reused."""
    status_line = stream.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length, close = 0, False
    while True:
        line = stream.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if length:
        stream.read(length)
    return status, close


def _http_client(load: Load, outcome: Outcome, lock: threading.Lock) -> None:
    rng = random.Random()
    latencies, succeeded, failures = [], 0, Counter()
    conn = stream = None
    while time.time() < load.stop_at:
        if conn is None:
            conn = socket.create_connection(load.address, timeout=30)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stream = conn.makefile("rb")
        request = load.targets[rng.randrange(len(load.targets))]
        started = time.perf_counter()
        try:
            conn.sendall(request)
            status, close = _read_response(stream)
        except OSError as exc:
            failures[type(exc).__name__] += 1
            conn.close()
            conn = None
            continue
        elapsed = time.perf_counter() - started
        if status != 201:  # counted apart: a fast error must not pass for throughput
            failures[status] += 1
        else:
            succeeded += 1
            if time.time() >= load.measure_from:
                latencies.append(elapsed * 1000)
        if close:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with lock:
        outcome.latencies_ms += latencies
        outcome.succeeded += succeeded
        outcome.failures.update(failures)


def _raw_client(load: Load, outcome: Outcome, lock: threading.Lock) -> None:
    rng = random.Random()
    latencies, succeeded, failures = [], 0, Counter()
    with psycopg.connect(load.database_url) as conn, conn.cursor() as cursor:
        while time.time() < load.stop_at:
            organization_id = load.targets[rng.randrange(len(load.targets))]
            started = time.perf_counter()
            cursor.execute(DEBIT_SQL, {"cost": PRICE_MICROS, "org": organization_id})
            row = cursor.fetchone()
            if row is None:
                conn.rollback()
                failures["insufficient"] += 1
                continue
            cursor.execute(
                APPEND_SQL,
                {
                    "org": organization_id,
                    "amount": -PRICE_MICROS,
                    "after": row[0],
                    "feature": FEATURE,
                    "price": PRICE_MICROS,
                    "quantity": 1_000_000,
                    "now": datetime.now(UTC).replace(tzinfo=None),
                },
            )
            cursor.fetchone()
            conn.commit()
            elapsed = time.perf_counter() - started
            succeeded += 1
            if time.time() >= load.measure_from:
                latencies.append(elapsed * 1000)
    with lock:
        outcome.latencies_ms += latencies
        outcome.succeeded += succeeded
        outcome.failures.update(failures)


def drive(load: Load) -> Outcome:
    """Run one process's clients until ``stop_at``; the entry point of each child process."""
    outcome, lock = Outcome(), threading.Lock()
    client = _http_client if load.kind == "http" else _raw_client
    time.sleep(max(0.0, load.start_at - time.time()))
    threads = [
        threading.Thread(target=client, args=(load, outcome, lock)) for _ in range(load.threads)
    ]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, load.measure_from - time.time()))
    cpu_from = time.process_time()
    time.sleep(max(0.0, load.stop_at - time.time()))
    outcome.cpu_seconds = time.process_time() - cpu_from
    for thread in threads:
        thread.join()
    return outcome


# --- the parent: database, server, runs, report ------------------------------------------------


@dataclass
class Result:
    scenario: str
    path: str
    requests: int
    throughput: float
    p50: float
    p99: float
    failures: Counter
    succeeded: int
    client_cpu_ms: float  # the load generator's CPU time per measured request
    server_cpu_ms: float | None = None  # gunicorn's CPU time per measured request


def percentile(sorted_samples: list[float], q: float) -> float:
    if not sorted_samples:
        return float("nan")
    return sorted_samples[max(0, math.ceil(q * len(sorted_samples)) - 1)]  # nearest rank


def process_tree_cpu(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by ``root_pid`` and its children (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == root_pid or int(fields[1]) == root_pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_load(
    scenario: str,
    path: str,
    kind: str,
    targets: list,
    args: argparse.Namespace,
    server_pid: int | None = None,
    **where,
) -> Result:
    processes = max(1, min(args.processes, args.clients))
    now = time.time()
    start_at = now + 2.0  # spawned interpreters need a moment to import
    measure_from = start_at + args.warmup
    stop_at = measure_from + args.duration
    shares = [args.clients // processes + (i < args.clients % processes) for i in range(processes)]
    loads = [
        Load(kind, targets, share, start_at, measure_from, stop_at, **where) for share in shares
    ]
    cpu: list[float] = []

    def sample_server_cpu() -> None:  # at the start and the end of the measured window
        for moment in (measure_from, stop_at):
            time.sleep(max(0.0, moment - time.time()))
            cpu.append(process_tree_cpu(server_pid))

    sampler = threading.Thread(target=sample_server_cpu, daemon=True)
    if server_pid is not None:
        sampler.start()
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        outcomes = list(pool.map(drive, loads))
    if server_pid is not None:
        sampler.join()
    latencies = sorted(sample for outcome in outcomes for sample in outcome.latencies_ms)
    failures: Counter = Counter()
    for outcome in outcomes:
        failures.update(outcome.failures)
    return Result(
        scenario,
        path,
        len(latencies),
        len(latencies) / args.duration,
        percentile(latencies, 0.50),
        percentile(latencies, 0.99),
        failures,
        sum(outcome.succeeded for outcome in outcomes),
        sum(outcome.cpu_seconds for outcome in outcomes) * 1000 / max(1, len(latencies)),
        (cpu[1] - cpu[0]) * 1000 / len(latencies) if len(cpu) == 2 and latencies else None,
    )


def create_database() -> str:
    name = f"portal_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    env = {**os.environ, "DATABASE_URL": url, "FLASK_APP": "wsgi"}
    subprocess.run(
        [str(Path(sys.executable).with_name("flask")), "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return url


@dataclass
class Seeded:
    hot_org_id: int
    hot_key: str
    org_ids: list[int]
    keys: list[str]


def seed(database_url: str, organizations_count: int) -> Seeded:
    """One hot organization and many others, each with a key, through the portal's services."""
    from portal import create_app
    from portal.credits import apikeys, organizations, pricing
    from portal.extensions import db
    from portal.money import MICRO

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        pricing.set_price(pricing.PriceSpec(FEATURE, PRICE_MICROS, name="Benchmark call"))
        hot = organizations.create_organization("bench-hot", "Hot", HOT_BALANCE * MICRO)
        hot_key = apikeys.create_api_key(hot.id, "bench").secret
        org_ids, keys = [], []
        for number in range(organizations_count):
            organization = organizations.create_organization(
                f"bench-{number}", f"Bench {number}", OTHER_BALANCE * MICRO
            )
            org_ids.append(organization.id)
            keys.append(apikeys.create_api_key(organization.id, "bench").secret)
        seeded = Seeded(hot.id, hot_key, org_ids, keys)
        db.session.remove()
        db.engine.dispose()
    return seeded


def mark_keys_recently_used(database_url: str) -> None:
    """Start from the steady state of a busy server: every key was used in the last minute.

    A key records its last use at most once a minute (``apikeys.TOUCH_INTERVAL``). Under steady
    load that is one extra write per key per minute; in a run of a few seconds it would instead
    put one extra commit on nearly every request of scenario B.
    """
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE api_keys SET last_used_at = timezone('utc', now())")


def deduct_request(host: str, port: int, api_key: str) -> bytes:
    head = (
        f"POST {DEDUCT_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(DEDUCT_BODY)}\r\n\r\n"
    )
    return head.encode() + DEDUCT_BODY


def check_ledger(database_url: str, expected_deducts: int) -> str:
    """Every success wrote one ledger row, and every balance is still the sum of its ledger."""
    with psycopg.connect(database_url) as conn:
        deducts = conn.execute(
            "SELECT count(*) FROM ledger_entries WHERE kind = 'deduct'"
        ).fetchone()[0]
        drifted = conn.execute(
            "SELECT count(*) FROM organizations o WHERE balance <> "
            "(SELECT coalesce(sum(amount), 0) FROM ledger_entries l "
            "WHERE l.organization_id = o.id) OR balance < 0 OR reserved > balance"
        ).fetchone()[0]
    if deducts == expected_deducts and drifted == 0:
        return f"ok ({deducts:,} deduct rows, one per success; every balance = sum of its ledger)"
    return (
        f"MISMATCH: {deducts:,} deduct rows for {expected_deducts:,} successes, {drifted} drifted"
    )


def report(results: list[Result], args: argparse.Namespace, consistency: str) -> None:
    def fmt(result: Result) -> str:
        errors = ", ".join(f"{k}: {v}" for k, v in result.failures.items()) or "0"
        cpu = "" if result.server_cpu_ms is None else f"{result.server_cpu_ms:.2f}"
        return (
            f"| {result.scenario} | {result.path} | {result.requests:,} | "
            f"{result.throughput:,.0f} | {result.p50:.1f} | {result.p99:.1f} | {cpu} | "
            f"{result.client_cpu_ms:.2f} | {errors} |"
        )

    print()
    print(
        f"{args.clients} concurrent clients, {args.duration:g} s measured after {args.warmup:g} s "
        f"warm-up; gunicorn gthread {args.workers} workers x {args.threads} threads; "
        f"{os.cpu_count()} CPUs; load average before: {args.load_before}"
    )
    print()
    print(
        "| scenario | path | requests | throughput (req/s) | p50 (ms) | p99 (ms) "
        "| server CPU/request (ms) | client CPU/request (ms) | errors |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    by_key = {(result.scenario, result.path): result for result in results}
    for scenario in ("A: one hot organization", "B: 1,000 organizations"):
        http = by_key[(scenario, "HTTP (gunicorn)")]
        raw = by_key[(scenario, "raw PostgreSQL")]
        print(fmt(http))
        print(fmt(raw))
        ratio = http.throughput / raw.throughput
        print(f"| {scenario} | **HTTP / raw** | | **{ratio:.0%}** | | | | | |")
    print()
    hot_http = by_key[("A: one hot organization", "HTTP (gunicorn)")]
    hot_raw = by_key[("A: one hot organization", "raw PostgreSQL")]
    ratio = hot_http.throughput / hot_raw.throughput
    print(
        f"Goal, hot organization HTTP >= 60% of raw: {ratio:.0%} "
        f"({'met' if ratio >= 0.6 else 'MISSED'})"
    )
    print(
        f"Goal, hot organization HTTP p99 <= 50 ms: {hot_http.p99:.1f} ms "
        f"({'met' if hot_http.p99 <= 50 else 'MISSED'})"
    )
    print(f"Ledger check: {consistency}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--organizations", type=int, default=1_000)
    # Two cores: one worker process per core (more only adds switching and cache misses, which
    # measured ~30% more CPU per request at 8 x 1), and 8 threads each so all 16 requests are in
    # flight at once and one thread's database wait is another thread's CPU time.
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--processes", type=int, default=2, help="load-generating processes")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    args.load_before = " ".join(f"{value:.2f}" for value in os.getloadavg())
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    database_url = create_database()
    results: list[Result] = []
    try:
        print(f"Seeding 1 hot + {args.organizations:,} organizations…", flush=True)
        seeded = seed(database_url, args.organizations)
        with tempfile.TemporaryDirectory() as tmp:
            portal = start_portal(
                "postgresql",
                database_url,
                Path(tmp) / "gunicorn.log",
                workers=args.workers,
                threads=args.threads,
            )
            try:
                host, port = portal.url.removeprefix("http://").split(":")
                address = (host, int(port))
                hot = [deduct_request(host, int(port), seeded.hot_key)]
                many = [deduct_request(host, int(port), key) for key in seeded.keys]
                for scenario, targets in (
                    ("A: one hot organization", hot),
                    ("B: 1,000 organizations", many),
                ):
                    print(f"HTTP, {scenario}…", flush=True)
                    mark_keys_recently_used(database_url)
                    results.append(
                        run_load(
                            scenario,
                            "HTTP (gunicorn)",
                            "http",
                            targets,
                            args,
                            server_pid=portal.process.pid,
                            address=address,
                        )
                    )
            finally:
                portal.stop()
        for scenario, targets in (
            ("A: one hot organization", [seeded.hot_org_id]),
            ("B: 1,000 organizations", seeded.org_ids),
        ):
            print(f"Raw PostgreSQL, {scenario}…", flush=True)
            results.append(
                run_load(
                    scenario, "raw PostgreSQL", "raw", targets, args, database_url=database_url
                )
            )
        consistency = check_ledger(database_url, sum(result.succeeded for result in results))
    finally:
        drop_postgres_database(ADMIN_URL, database_url)
    report(results, args, consistency)
    print(f"(whole run: {time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
