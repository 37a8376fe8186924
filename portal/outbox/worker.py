"""``flask worker``: the one long-running process beside the web server.

Each tick: dispatch undispatched outbox events (fan-out into webhook deliveries), deliver the
webhooks that are due, then run the scheduled jobs that are due (``portal.outbox.jobs``). Every
step catches its own failure, so a broken database connection or a failing job is logged and
retried on the next tick instead of stopping the worker. SIGTERM and SIGINT finish the tick in
progress and stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime
from types import FrameType
from typing import Any

from flask import Flask

from portal.extensions import db
from portal.outbox import jobs
from portal.outbox.dispatch import dispatch_pending, optional
from portal.timeutil import utcnow


@dataclass
class Tick:
    dispatched: int = 0
    dispatch_failed: int = 0
    delivered: Any = None  # the webhooks' DeliveryReport, when that package is installed
    jobs: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        plural = "" if self.dispatched == 1 else "s"
        lines = [f"dispatched {self.dispatched} event{plural} ({self.dispatch_failed} failed)"]
        if is_dataclass(self.delivered) and not isinstance(self.delivered, type):
            counts = ", ".join(f"{k} {v}" for k, v in asdict(self.delivered).items())
            lines.append(f"webhook deliveries: {counts}")
        elif self.delivered is not None:
            lines.append(f"webhook deliveries: {self.delivered}")
        lines += [f"{name}: {outcome}" for name, outcome in self.jobs.items()]
        lines += [f"error: {error}" for error in self.errors]
        return "\n".join(lines)


def _step(app: Flask, tick: Tick, what: str, action: Any) -> Any:
    try:
        return action()
    except Exception as exc:
        app.logger.exception("worker: %s failed", what)
        tick.errors.append(f"{what}: {type(exc).__name__}: {exc}")
        return None
    finally:
        db.session.remove()


def run_once(app: Flask, now: datetime | None = None) -> Tick:
    """Everything due now, once (``flask worker --once``, cron, tests)."""
    now = now or utcnow()
    tick = Tick()
    dispatched = _step(app, tick, "dispatch", lambda: dispatch_pending(now))
    if dispatched is not None:
        tick.dispatched, tick.dispatch_failed = dispatched
    deliver_due = optional("portal.webhooks.delivery", "deliver_due")
    if deliver_due is not None:
        tick.delivered = _step(app, tick, "webhook delivery", lambda: deliver_due(now))
    tick.jobs = _step(app, tick, "scheduled jobs", lambda: jobs.run_due(app, now)) or {}
    return tick


def run_forever(
    app: Flask, poll_seconds: float | None = None, ready: Callable[[], None] | None = None
) -> None:
    """Tick every ``PORTAL_WORKER_POLL_SECONDS`` (1) until SIGTERM or SIGINT; ``ready`` is
    called once the signals are handled (so a supervisor told "running" may stop it)."""
    poll = float(poll_seconds or app.config.get("PORTAL_WORKER_POLL_SECONDS") or 1)
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        app.logger.info("worker: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    app.logger.info("worker %s: polling every %ss", jobs.WORKER_ID, poll)
    if ready is not None:
        ready()
    try:
        while not stop.is_set():
            run_once(app)
            stop.wait(poll)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
