"""What the rate limiter costs a deduct, in process: no server, no network but Redis's.

    python -m tests.benchmarks.limiter_cost [--requests 1000] [--rounds 7] [--redis URL]

Apps on one migrated SQLite file: limits off, limits on memory storage, limits on Redis (a
key prefix of its own, deleted at the end), and limits off again as a control: its distance
from "off" is the machine's noise. Each round sends ``--requests`` deducts through Flask's
test client to each app, in a shuffled order (so a noisy neighbour on a shared machine hurts
all alike), and records CPU time (``process_time``: this process only, so Redis's own CPU is
not in it) and wall time per request; the table prints the median round and, for CPU, the
least disturbed one (contention only ever adds). The API limit is raised so that no request
is refused: the figure is the cost of counting, not of refusing.

Then the limiter's API hook alone (the address check and the per-key count, inside a request
context): the part of the difference that is Flask-Limiter + Redis, not noise in the rest.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from flask import Flask

from portal import create_app, limits
from tests.live import Seeder, migrate

BODY = {"feature_key": "generate_content", "quantity": 1}


def build(database_url: str, mode: str, redis_url: str, prefix: str) -> Flask:
    storage = {"redis": redis_url}.get(mode, "memory://")
    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": database_url,
            "RATELIMIT_ENABLED": not mode.startswith("off"),
            "RATELIMIT_STORAGE_URI": storage,
            "RATELIMIT_KEY_PREFIX": prefix,
            "PORTAL_API_RATE_LIMIT": "1000000000 per minute",
        }
    )


def round_of(app: Flask, headers: dict[str, str], requests: int) -> tuple[float, float]:
    client = app.test_client()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(requests):
        response = client.post("/api/v1/credits/deduct", json=BODY, headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
    return (
        (time.process_time() - cpu) / requests * 1e6,
        (time.perf_counter() - wall) / requests * 1e6,
    )


def per_call(function: Callable[[], object], number: int) -> float:
    function()
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def hook_cost(app: Flask, number: int = 3000) -> tuple[float, float, float]:
    """Per API request, us: our hook; Flask-Limiter's own before/after-request hooks (which
    every request passes, the API filtered out early); for comparison, the same count through
    a Flask-Limiter route decorator."""
    portal_limits = app.extensions[limits.EXTENSION]
    decorated = portal_limits.limiter.shared_limit(
        "1000000000 per minute", scope="bench", key_func=lambda: "1"
    )(lambda: None)

    def hook() -> None:
        portal_limits.refuse_blocked_address()
        portal_limits.count_key(1)

    flask_limiter = portal_limits.limiter
    response = app.response_class("{}")

    def middleware() -> None:
        flask_limiter._check_request_limit()
        flask_limiter._Limiter__inject_headers(response)  # type: ignore[attr-defined]

    with app.test_request_context("/api/v1/credits/deduct", method="POST"):
        ours = per_call(hook, number)
        theirs_on_every_request = per_call(middleware, number)
    with app.test_request_context("/login", method="POST"):  # the API is filtered out of it
        theirs = per_call(decorated, number)
    return ours, theirs_on_every_request, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
    args = parser.parse_args()

    prefix = f"bench-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
        migrate(url)
        seeder = Seeder(url)
        seeder.price("generate_content", "0.000001")
        key = seeder.org(credits=Decimal(10**9)).api_key
        seeder.close()
        headers = {"Authorization": f"Bearer {key}"}
        # "off again" is a control: its distance from "off" is this machine's noise.
        modes = ("off", "memory", "redis", "off again")
        apps = {mode: build(url, mode, args.redis, prefix) for mode in modes}
        for app in apps.values():  # warm up: connections, statement caches, Lua script load
            round_of(app, headers, 50)
        results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in apps}
        order = list(apps)
        for _ in range(args.rounds):
            random.shuffle(order)  # no mode always runs first (or right after a WAL checkpoint)
            for mode in order:
                results[mode].append(round_of(apps[mode], headers, args.requests))
        hooks = {mode: hook_cost(apps[mode]) for mode in ("memory", "redis")}
        for app in apps.values():
            with app.app_context():
                from portal.extensions import db

                db.engine.dispose()

    import redis

    connection = redis.Redis.from_url(args.redis)
    for stored in connection.scan_iter(match=f"*{prefix}*"):
        connection.delete(stored)

    base_cpu = statistics.median(cpu for cpu, _ in results["off"])
    base_wall = statistics.median(wall for _, wall in results["off"])
    print(f"deduct through the test client, median of {args.rounds} rounds x {args.requests}")
    base_min = min(cpu for cpu, _ in results["off"])
    print(
        "| limits | CPU us/request (median) | vs off | CPU (min) | vs off | wall us/request "
        "| vs off | API hook, us | Flask-Limiter's request hooks, us "
        "| a count via a Flask-Limiter decorator, us |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mode in apps:
        cpu = statistics.median(c for c, _ in results[mode])
        least = min(c for c, _ in results[mode])
        wall = statistics.median(w for _, w in results[mode])
        hook, middleware, decorator = (
            (f"{t:.1f}" for t in hooks[mode]) if mode in hooks else ("", "", "")
        )
        print(
            f"| {mode} | {cpu:.0f} | {100 * (cpu - base_cpu) / base_cpu:+.1f}% "
            f"| {least:.0f} | {100 * (least - base_min) / base_min:+.1f}% "
            f"| {wall:.0f} | {100 * (wall - base_wall) / base_wall:+.1f}% "
            f"| {hook} | {middleware} | {decorator} |"
        )


if __name__ == "__main__":
    main()
