"""Scheduled jobs: a registry of periodic work, each run claimed through its ScheduledJob row.

The claim is one conditional UPDATE (``next_run_at <= now`` and no live lease): whichever
worker's UPDATE changes the row runs that due time, every other worker's changes nothing, on
PostgreSQL (the row lock makes the second UPDATE re-check after the first commits) and SQLite
(writers are serialized). A lease (``locked_until``) frees the job if its worker died mid-run.
A failing job is logged, recorded in ``last_outcome`` and rescheduled: it never stops the
worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from portal.credits import idempotency, service
from portal.credits.models import CreditGrant
from portal.extensions import db
from portal.money import format_credits
from portal.outbox import events
from portal.outbox.models import ScheduledJob

# ``flask credits purge-idempotency``'s default retention.
IDEMPOTENCY_RETENTION = timedelta(hours=48)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"[:64]


@dataclass(frozen=True)
class Job:
    name: str
    every: timedelta
    run: Callable[[datetime], str]  # returns what it did, for last_outcome and the summary
    lease: timedelta = timedelta(minutes=10)
    enabled: Callable[[Flask], bool] = lambda app: True


def expire_credits(now: datetime) -> str:
    total = service.expire_due(now)
    return f"expired {format_credits(total)} credits"


def expiry_warnings(now: datetime) -> str:
    """``credits.expiring`` for every grant with credits left that expires within 7 days,
    once per grant (its dedupe key), however often this runs."""
    horizon = now + timedelta(days=events.EXPIRING_WITHIN_DAYS)
    warned = 0
    with service.transaction():
        grants = db.session.execute(
            select(
                CreditGrant.id,
                CreditGrant.organization_id,
                CreditGrant.kind,
                CreditGrant.remaining,
                CreditGrant.expires_at,
            )
            .where(
                CreditGrant.remaining > 0,
                CreditGrant.expires_at > now,
                CreditGrant.expires_at <= horizon,
            )
            .order_by(CreditGrant.expires_at, CreditGrant.id)
        ).all()
        for grant in grants:
            warned += events.credits_expiring(
                grant.organization_id, grant.id, grant.kind, grant.remaining, grant.expires_at
            )
    return f"warned of {warned} expiring grant{'' if warned == 1 else 's'}"


def purge_idempotency(now: datetime) -> str:
    return f"removed {idempotency.purge_expired(IDEMPOTENCY_RETENTION)} idempotency records"


def _sandbox_on_worker(app: Flask) -> bool:
    """The sandbox's deliveries ride here only when its in-server thread is switched off
    (config ``STRIPE_SANDBOX_WORKER = False``): that thread is woken by each commit, which a
    separate process cannot be, so checkouts complete at once under a plain ``flask run``."""
    from portal.stripe_sandbox import sandbox_enabled

    return sandbox_enabled(app.config) and app.config.get("STRIPE_SANDBOX_WORKER") is False


def sandbox_deliveries(now: datetime) -> str:
    from portal.stripe_sandbox import delivery

    return f"sandbox: {delivery.deliver_due().attempted} attempted"


JOBS: list[Job] = [
    Job("expire_credits", timedelta(minutes=1), expire_credits),
    Job("expiry_warnings", timedelta(hours=1), expiry_warnings),
    Job("purge_idempotency", timedelta(hours=1), purge_idempotency),
    Job(
        "sandbox_deliveries",
        timedelta(seconds=1),
        sandbox_deliveries,
        lease=timedelta(minutes=1),
        enabled=_sandbox_on_worker,
    ),
]


def _ensure_row(name: str, now: datetime) -> None:
    """A job never seen before is due now (insert once, whoever is first)."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    db.session.execute(
        dialect.insert(ScheduledJob)
        .values(name=name, next_run_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    db.session.commit()


def _not_due(now: datetime) -> set[str]:
    """Jobs that certainly need no claim now, read in one go: an idle tick then writes
    nothing (on SQLite every write transaction takes the database's one write lock)."""
    names = set(
        db.session.scalars(
            select(ScheduledJob.name).where(
                or_(ScheduledJob.next_run_at > now, ScheduledJob.locked_until >= now)
            )
        )
    )
    db.session.rollback()
    return names


def claim(name: str, now: datetime, lease: timedelta, worker: str = WORKER_ID) -> bool:
    """Take this due run of ``name``: True for exactly one claimer."""
    _ensure_row(name, now)
    taken = db.session.execute(
        update(ScheduledJob)
        .where(
            ScheduledJob.name == name,
            ScheduledJob.next_run_at <= now,
            or_(ScheduledJob.locked_until.is_(None), ScheduledJob.locked_until < now),
        )
        .values(locked_by=worker, locked_until=now + lease)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return taken.rowcount == 1


def finish(job: Job, now: datetime, outcome: str, worker: str = WORKER_ID) -> None:
    db.session.execute(
        update(ScheduledJob)
        .where(ScheduledJob.name == job.name, ScheduledJob.locked_by == worker)
        .values(
            next_run_at=now + job.every,
            last_run_at=now,
            last_outcome=outcome[:255],
            locked_by=None,
            locked_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def run_due(app: Flask, now: datetime) -> dict[str, str]:
    """Run every enabled job whose time has come and this worker claimed; name → outcome."""
    outcomes: dict[str, str] = {}
    waiting = _not_due(now)
    for job in JOBS:
        if job.name in waiting or not job.enabled(app) or not claim(job.name, now, job.lease):
            continue
        try:
            outcome = job.run(now)
        except Exception as exc:
            db.session.rollback()
            current_app.logger.exception("worker: job %s failed", job.name)
            outcome = f"failed: {type(exc).__name__}: {exc}"
        db.session.rollback()  # whatever the job left open
        finish(job, now, outcome)
        outcomes[job.name] = outcome
    return outcomes
