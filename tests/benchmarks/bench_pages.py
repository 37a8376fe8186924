"""Server time of the dashboard, usage and transactions pages, and a full CSV export, for an
organization with 1,000,000 ledger rows on PostgreSQL.

    python -m tests.benchmarks.bench_pages [--rows 1000000] [--requests 40]

It makes its own database (dropped at the end), imports a year of usage through the credits
service (``import_history``, in batches), serves the portal with one gunicorn worker, logs in
like a browser and times each page by its ``Server-Timing`` header (the app's own time) and by
the client. The export is streamed to the end while the worker's RSS is sampled.
Goals (issue 3): p95 <= 100 ms per page; export memory flat (worker RSS grows < 50 MB).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx

from tests.live import create_postgres_database, drop_postgres_database, start_portal

ADMIN_URL = os.environ.get("PORTAL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
EMAIL, PASSWORD = "bench@example.com", "bench-password-1"
FEATURES = [
    ("seedream_text_to_image", 30),
    ("ai_chat", 40),
    ("generate_video", 4),
    ("file_processing", 8),
    ("text_generation", 12),
    ("claude_3_5_sonnet_input_1k_tokens", 10),
    ("generate_voice", 6),
]


def seed(database_url: str, rows: int) -> tuple[str, float]:
    """Prices, one organization with ``rows`` ledger rows over 365 days, one owner login."""
    from portal import create_app
    from portal.auth import service as people
    from portal.credits import demo, organizations, service
    from portal.credits.models import FeaturePrice
    from portal.extensions import db
    from portal.money import MICRO, cost_micros
    from portal.timeutil import utcnow

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    started = time.perf_counter()
    with app.app_context():
        demo.ensure_prices()
        prices = {p.feature_key: p.credits_per_unit for p in db.session.query(FeaturePrice)}
        org_id = organizations.create_organization("bench", "Bench Inc", 0).id
        departments = [
            service.set_department_limit(org_id, name, None).id
            for name in ("Marketing", "Research", "Support")
        ]
        user = people.create_user(EMAIL, PASSWORD)
        people.add_membership(user, org_id, "owner")
        rng = random.Random(1)
        keys, weights = zip(*FEATURES, strict=True)
        now = utcnow()
        start = now - timedelta(days=365)
        step = timedelta(days=365) / rows
        batch = 50_000
        service.import_history(
            org_id,
            [service.HistoricEntry("grant", 10_000_000 * MICRO, start, description="Opening")],
        )
        for first in range(0, rows - 1, batch):
            entries = []
            for index in range(first, min(first + batch, rows - 1)):
                key = rng.choices(keys, weights)[0]
                quantity = rng.randint(1, 5) * MICRO
                entries.append(
                    service.HistoricEntry(
                        "deduct",
                        -cost_micros(prices[key], quantity),
                        start + step * (index + 1),
                        feature_key=key,
                        unit_price=prices[key],
                        quantity=quantity,
                        department_id=rng.choice([*departments, None]),
                        user_ref=f"user{rng.randint(1, 40)}@bench.example",
                    )
                )
            service.import_history(org_id, entries)
            db.session.expunge_all()
        # What autovacuum does within a minute of a bulk load; without it the planner would
        # be timed on statistics of an empty table.
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        db.session.remove()
        db.engine.dispose()
    return "bench", time.perf_counter() - started


def login(client: httpx.Client) -> None:
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    response = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302, response.text[:300]


def server_ms(response: httpx.Response) -> float:
    match = re.search(r"dur=([0-9.]+)", response.headers.get("Server-Timing", ""))
    return float(match.group(1)) if match else float("nan")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


def main() -> None:
    parser = argparse.ArgumentParser(description="Page server time with a large ledger.")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    database_url = create_postgres_database(ADMIN_URL, prefix="portal_bench_pages")
    portal = None
    try:
        _, seed_seconds = seed(database_url, args.rows)
        print(f"seeded {args.rows:,} ledger rows in {seed_seconds:.1f} s")
        with tempfile.TemporaryDirectory() as workdir:
            portal = start_portal(
                "postgresql", database_url, Path(workdir) / "gunicorn.log", workers=1, threads=2
            )
            with httpx.Client(base_url=portal.url, timeout=120) as client:
                login(client)
                first = client.get("/dashboard")
                print(
                    f"first dashboard view (folds {args.rows:,} rows into the rollup): "
                    f"{server_ms(first):.0f} ms"
                )
                pages = {
                    "dashboard (30 days)": "/dashboard",
                    "dashboard (90 days)": "/dashboard?days=90",
                    "chart partial (7 days)": "/dashboard/chart?days=7",
                    "usage, first page": "/usage",
                    "usage, one feature": "/usage?feature=generate_video",
                    "usage, one department": "/usage?department=Research",
                    "usage, a month 6 months ago": _old_month_query(),
                    "transactions": "/transactions",
                }
                results = []
                for name, path in pages.items():
                    server, wall = [], []
                    for _ in range(args.requests):
                        began = time.perf_counter()
                        response = client.get(path)
                        wall.append((time.perf_counter() - began) * 1000)
                        assert response.status_code == 200, (path, response.status_code)
                        server.append(server_ms(response))
                    results.append((name, server, wall))
                export = measure_export(client, worker_pid(portal.process.pid))
        print()
        print(
            f"| page ({args.rows:,} ledger rows) | server p50 ms | server p95 ms | client p95 ms |"
        )
        print("|---|---:|---:|---:|")
        for name, server, wall in results:
            print(
                f"| {name} | {statistics.median(server):.1f} | {percentile(server, 95):.1f} "
                f"| {percentile(wall, 95):.1f} |"
            )
        print()
        print("| CSV export | value |")
        print("|---|---:|")
        for key, value in export.items():
            print(f"| {key} | {value} |")
    finally:
        if portal is not None:
            portal.stop()
        drop_postgres_database(ADMIN_URL, database_url)


def _old_month_query() -> str:
    from datetime import UTC, datetime

    today = datetime.now(UTC).date()
    start = today - timedelta(days=180)
    return f"/usage?start={start.isoformat()}&end={(start + timedelta(days=30)).isoformat()}"


def measure_export(client: httpx.Client, pid: int) -> dict[str, str]:
    baseline = rss_mb(pid)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    size = lines = 0
    with client.stream("GET", "/usage.csv") as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.perf_counter() - began
    done.set()
    sampler.join()
    return {
        "rows exported": f"{lines - 1:,}",
        "bytes": f"{size / 1e6:.1f} MB",
        "time": f"{seconds:.1f} s ({(lines - 1) / seconds:,.0f} rows/s)",
        "worker RSS before": f"{baseline:.1f} MB",
        "worker RSS peak": f"{peak[0]:.1f} MB",
        "RSS growth": f"{peak[0] - baseline:.1f} MB",
    }


if __name__ == "__main__":
    main()
