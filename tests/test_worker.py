"""``flask worker``: dispatch, scheduled jobs claimed once, crash recovery, clean stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.credits import service
from portal.extensions import db
from portal.outbox import dispatch, emit, jobs
from portal.outbox.models import OutboxEvent, ScheduledJob
from portal.timeutil import utcnow
from tests.conftest import postgres_app

ROOT = Path(__file__).resolve().parents[1]
FLASK = Path(sys.executable).with_name("flask")


def undispatched() -> list[str]:
    found = list(
        db.session.scalars(select(OutboxEvent.event_id).where(OutboxEvent.dispatched_at.is_(None)))
    )
    db.session.rollback()
    return found


def job(name: str) -> ScheduledJob:
    row = db.session.get(ScheduledJob, name)
    db.session.rollback()
    return row


def test_worker_once_dispatches_events_and_runs_due_jobs(app, runner, make_org):
    make_org(10)  # its opening grant wrote credits.granted
    assert len(undispatched()) == 1
    result = runner.invoke(args=["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "dispatched 1 event (0 failed)" in result.output
    assert "expire_credits: expired 0 credits" in result.output
    assert "purge_idempotency: removed 0 idempotency records" in result.output
    assert undispatched() == []
    assert job("expiry_warnings").last_outcome == "warned of 0 expiring grants"
    assert job("expire_credits").next_run_at > utcnow()
    again = runner.invoke(args=["worker", "--once"])  # nothing due any more
    assert again.exit_code == 0
    assert "dispatched 0 events (0 failed)" in again.output
    assert not any(name in again.output for name in ("expire_credits", "expiry_warnings"))


def test_an_event_left_by_a_crash_is_dispatched_later_with_its_id(app, make_org, monkeypatch):
    org = make_org(0)
    with service.transaction():
        event = emit("test.thing", org.id, {})
        event_id = event.event_id
    sent: list[str] = []

    def crashing(event, now):
        raise ConnectionError("the worker died before its commit")

    def recording(event, now):
        sent.append(event.event_id)
        return 0

    monkeypatch.setattr(dispatch, "optional", lambda module, name: crashing)
    assert dispatch.dispatch_pending(utcnow()) == (0, 1)
    assert event_id in undispatched()
    monkeypatch.setattr(
        dispatch, "optional", lambda module, name: recording if name == "fan_out" else None
    )
    assert dispatch.dispatch_pending(utcnow()) == (1, 0)
    assert event_id in sent
    assert undispatched() == []
    assert dispatch.dispatch_pending(utcnow()) == (0, 0)  # never twice


def test_a_failing_job_is_recorded_and_rescheduled_and_the_others_run(app, monkeypatch):
    def broken(now):
        raise RuntimeError("disk full")

    failing = jobs.Job("expire_credits", timedelta(minutes=1), broken)
    monkeypatch.setattr(jobs, "JOBS", [failing, *jobs.JOBS[1:]])
    now = utcnow()
    outcomes = jobs.run_due(app, now)
    assert outcomes["expire_credits"] == "failed: RuntimeError: disk full"
    assert "expiry_warnings" in outcomes
    row = job("expire_credits")
    assert row.last_outcome == "failed: RuntimeError: disk full"
    assert row.next_run_at == now + timedelta(minutes=1)
    assert row.locked_until is None


def _race(app, claimers: int = 6) -> list[bool]:
    now = utcnow()
    barrier = threading.Barrier(claimers)
    results: list[bool] = []

    def claim() -> None:
        with app.app_context():
            barrier.wait()
            results.append(jobs.claim("expire_credits", now, timedelta(minutes=5), "w"))
            db.session.remove()

    threads = [threading.Thread(target=claim) for _ in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_a_due_job_is_claimed_once_when_claimers_race(app):
    results = _race(app)
    assert sorted(results) == [False] * 5 + [True]


def test_a_due_job_is_claimed_once_by_racing_postgresql_sessions(backend, database_url):
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    with postgres_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 10}) as app:
        results = _race(app, 8)
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_flask_worker_stops_cleanly_on_a_signal(sqlite_template, tmp_path, stop):
    database = tmp_path / "worker.sqlite3"
    shutil.copyfile(sqlite_template, database)
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "FLASK_APP": "wsgi",
        "PYTHONUNBUFFERED": "1",
        "PORTAL_WORKER_POLL_SECONDS": "0.2",
    }
    process = subprocess.Popen(
        [str(FLASK), "worker"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert "Worker running" in process.stdout.readline()
        process.send_signal(stop)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "Worker stopped." in output


def test_racing_postgresql_workers_dispatch_each_event_once(backend, database_url, monkeypatch):
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    sent: list[str] = []
    lock = threading.Lock()

    def recording(event, now):
        with lock:
            sent.append(event.event_id)
        return 0

    monkeypatch.setattr(
        dispatch, "optional", lambda module, name: recording if name == "fan_out" else None
    )
    with postgres_app(database_url, SQLALCHEMY_ENGINE_OPTIONS={"pool_size": 10}) as app:
        with service.transaction():
            ids = [emit("test.thing", None, {"n": n}).event_id for n in range(40)]
        db.session.remove()
        barrier = threading.Barrier(4)
        counts: list[tuple[int, int]] = []

        def work() -> None:
            with app.app_context():
                barrier.wait()
                counts.append(dispatch.dispatch_pending(utcnow(), limit=100))
                db.session.remove()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert undispatched() == []
    assert sorted(sent) == sorted(ids)
    assert sum(done for done, _failed in counts) == 40
