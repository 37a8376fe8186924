"""A live portal for tests and benchmarks: gunicorn over a migrated database of its own.

The client is proven against the real thing (HTTP, gunicorn, SQLite or PostgreSQL), not a mock.
Organizations, keys and prices are seeded through the credits services inside an app context
of this process, which is what the ``flask org|apikey|pricing`` commands call, minus the
second of interpreter start-up each command would cost.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import count
from pathlib import Path

import httpx
from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = Path(sys.executable).with_name("gunicorn")

# The prices the tests and the docs' examples rely on: (feature_key, credits per unit, unit).
CATALOGUE: tuple[tuple[str, str, str], ...] = (
    ("generate_content", "1", "call"),
    ("answer_question", "0.5", "call"),
    ("seedream_text_to_image", "5", "call"),
    ("generate_video", "0.5", "second"),
    ("ai_chat", "1", "100_chars"),
    ("file_processing", "1", "mb"),
    ("workflow_execution", "0.001", "call"),
    ("precise_feature", "0.333333", "call"),
    ("claude_3_5_sonnet_input_1k_tokens", "0.003", "1k_tokens"),
    ("claude_3_5_sonnet_output_1k_tokens", "0.015", "1k_tokens"),
    ("gpt_4o_input_1k_tokens", "0.0025", "1k_tokens"),
    ("gpt_4o_output_1k_tokens", "0.01", "1k_tokens"),
)
INACTIVE_FEATURE = "retired_feature"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class OrgKey:
    slug: str
    api_key: str


@dataclass
class Seeder:
    """Writes test data with the portal's own services, in an app context of this process."""

    database_url: str
    _serial: count = field(default_factory=lambda: count(1))

    def __post_init__(self) -> None:
        from portal import create_app

        self.app = create_app({"SQLALCHEMY_DATABASE_URI": self.database_url})

    def price(
        self, feature_key: str, credits: str, unit: str = "call", active: bool = True
    ) -> None:
        from portal.credits import pricing
        from portal.money import parse_micros

        with self.app.app_context():
            spec = pricing.PriceSpec(
                feature_key,
                parse_micros(Decimal(credits), allow_zero=True),
                category="AI" if "tokens" in unit else "General",
                unit=unit,
                active=active,
            )
            pricing.set_price(spec)

    def catalogue(self) -> None:
        for feature_key, credits, unit in CATALOGUE:
            self.price(feature_key, credits, unit)
        self.price(INACTIVE_FEATURE, "1", active=False)

    def org(self, credits: Decimal | int = 1000) -> OrgKey:
        from portal.credits import apikeys, organizations
        from portal.money import parse_micros

        slug = f"org-{uuid.uuid4().hex[:8]}-{next(self._serial)}"
        with self.app.app_context():
            organization = organizations.create_organization(
                slug, slug, parse_micros(Decimal(credits), allow_zero=True)
            )
            secret = apikeys.create_api_key(organization.id, "client tests").secret
        return OrgKey(slug, secret)

    def grant(
        self,
        slug: str,
        credits: str,
        *,
        days: float | None = None,
        kind: str = "grant",
        source_ref: str | None = None,
    ) -> int:
        """A grant expiring in ``days`` (None: never; negative: already expired); its id."""
        from datetime import timedelta

        from portal.credits import organizations, service
        from portal.money import parse_micros
        from portal.timeutil import utcnow

        with self.app.app_context():
            organization = organizations.get_by_slug(slug)
            expires_at = None if days is None else utcnow() + timedelta(days=days)
            granted = service.grant(
                organization.id,
                parse_micros(Decimal(credits)),
                kind,
                description=f"{kind} of {credits}",
                source_ref=source_ref,
                terms=service.GrantTerms(expires_at=expires_at),
            )
        return granted.grant_id

    def freeze(self, slug: str, grant_ref: str) -> None:
        """Freeze a purchase grant's credits, as an open dispute does."""
        from portal.credits import organizations, service

        with self.app.app_context():
            organization = organizations.get_by_slug(slug)
            service.freeze(
                organization.id, grant_ref, source_ref=f"dp_{uuid.uuid4().hex}", description="x"
            )

    def revoke_keys(self, slug: str) -> None:
        from portal.credits import apikeys, organizations

        with self.app.app_context():
            organization = organizations.get_by_slug(slug)
            for key in apikeys.list_api_keys(organization.id):
                apikeys.revoke_api_key(organization.id, key.id)

    def close(self) -> None:
        from portal.extensions import db

        with self.app.app_context():
            db.session.remove()
            db.engine.dispose()


@dataclass
class LivePortal:
    backend: str
    database_url: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    seeder: Seeder | None = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGINT is gunicorn's quick shutdown: SIGTERM would wait out idle keep-alives.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_portal(
    backend: str,
    database_url: str,
    log_path: Path,
    *,
    workers: int = 1,
    threads: int = 8,
    env: dict[str, str] | None = None,
) -> LivePortal:
    """Serve ``wsgi:app`` with gunicorn on a free loopback port; return once it answers."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [
        str(GUNICORN),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--log-level",
        "warning",
        "wsgi:app",
    ]
    log = log_path.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    portal = LivePortal(backend, database_url, f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{portal.log_tail()}")
        try:
            if httpx.get(f"{portal.url}/api/v1/openapi.json", timeout=1).status_code == 200:
                return portal
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    portal.stop()
    raise RuntimeError(f"gunicorn did not answer within 30 s:\n{portal.log_tail()}")


# --- databases of our own -----------------------------------------------------------------


def migrate(database_url: str) -> None:
    from flask_migrate import upgrade

    from portal import create_app
    from portal.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url})
    with app.app_context():
        upgrade()
        db.engine.dispose()


def _pg_admin(admin_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql)


def create_postgres_database(
    admin_url: str, prefix: str = "portal_client", *, migrated: bool = True
) -> str:
    """A fresh database (migrated unless told otherwise), so no other test's clean-up can wipe
    a live server's data."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _pg_admin(admin_url, f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    if migrated:
        migrate(url)
    return url


def drop_postgres_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    _pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object) -> None:
        """Request lines would bury a failure's output."""


@contextmanager
def serve_in_thread(app: Flask, poll_interval: float = 0.1) -> Iterator[str]:
    """Serve ``app`` in this process on a free loopback port, one thread per request.

    For tests that need real HTTP against the test database their ``app`` fixture made
    (concurrency, webhooks delivered by several threads, the Stripe sandbox).
    """
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(poll_interval,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
