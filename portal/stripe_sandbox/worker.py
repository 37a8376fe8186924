"""The delivery worker: one daemon thread per process, started by the first request it serves.

Lazily, because a WSGI server may fork after the app is built and threads do not survive a
fork; per process, because the claim in ``delivery`` already makes several processes safe.
Under ``TESTING`` it stays off unless ``STRIPE_SANDBOX_WORKER`` asks for it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import httpx
from flask import Flask

from portal.extensions import db
from portal.stripe_sandbox import delivery, idempotency

EXTENSION = "stripe_sandbox_worker"
PURGE_EVERY_SECONDS = 3600
_start_lock = threading.Lock()


@dataclass
class Worker:
    pid: int
    thread: threading.Thread | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


def wanted(app: Flask) -> bool:
    flag = app.config.get("STRIPE_SANDBOX_WORKER")
    return (not app.testing) if flag is None else bool(flag)


def ensure_started(app: Flask) -> None:
    """Start this process's worker if it should run and is not running."""
    worker: Worker | None = app.extensions.get(EXTENSION)
    if worker is not None and worker.pid == os.getpid() and not worker.stop.is_set():
        return
    if not wanted(app):
        return
    with _start_lock:
        worker = app.extensions.get(EXTENSION)
        if worker is not None and worker.pid == os.getpid() and not worker.stop.is_set():
            return
        worker = Worker(pid=os.getpid())
        worker.thread = threading.Thread(
            target=_run, args=(app, worker), name="stripe-sandbox-webhooks", daemon=True
        )
        app.extensions[EXTENSION] = worker
        worker.thread.start()


def wake(app: Flask) -> None:
    """Deliver what was just committed now rather than at the next poll."""
    worker: Worker | None = app.extensions.get(EXTENSION)
    if worker is not None:
        worker.wake.set()


def stop(app: Flask, timeout: float = 10.0) -> None:
    """Stop this process's worker (tests, shutdown); a later request may start a new one."""
    worker: Worker | None = app.extensions.get(EXTENSION)
    if worker is None or worker.thread is None:
        return
    worker.stop.set()
    worker.wake.set()
    worker.thread.join(timeout)


def _run(app: Flask, worker: Worker) -> None:
    poll = float(app.config.get("STRIPE_SANDBOX_POLL_SECONDS", 0.5))
    pause = poll
    last_purge = 0.0
    with httpx.Client(timeout=delivery.TIMEOUT_SECONDS) as client:
        while not worker.stop.is_set():
            worker.wake.clear()
            attempted = 0
            try:
                with app.app_context():
                    try:
                        attempted = delivery.deliver_due(client=client).attempted
                        if time.monotonic() - last_purge > PURGE_EVERY_SECONDS:
                            idempotency.purge()
                            last_purge = time.monotonic()
                    finally:
                        db.session.remove()
                pause = poll
            except Exception:
                # A missing table (before ``flask db upgrade``) or a database restart: keep
                # going, but back off so the log is not flooded.
                app.logger.exception("stripe sandbox: webhook delivery pass failed")
                pause = min(max(pause * 2, 1.0), 60.0)
            if not attempted:
                worker.wake.wait(pause)
