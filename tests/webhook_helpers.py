"""A real webhook receiver for tests: a local HTTP server thread that records every request and
answers with the statuses it is told to (then 200), and checks nothing itself: tests verify
signatures with the ``standardwebhooks`` library, never with the portal's own code."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks
from sqlalchemy import select

from portal import timeutil
from portal.extensions import db
from portal.outbox import new_event_id
from portal.outbox.models import OutboxEvent
from portal.webhooks import dispatch


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> Any:
        """The payload, if ``secret`` signed it (raises ``WebhookVerificationError`` if not)."""
        return standardwebhooks.Webhook(secret).verify(self.body, self.headers)


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self.statuses: list[int] = []  # answered in order; then 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(f"answer {status}".encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_event(org_id: int, event_type: str = "credits.granted", **data: Any) -> OutboxEvent:
    """An outbox event as ``portal.outbox.emit`` writes it (built here: that code is another
    branch's), fanned out to the organization's endpoints."""
    now = timeutil.utcnow()  # through the module: the clock fixture stops it there
    event = OutboxEvent(
        event_id=new_event_id(),
        organization_id=org_id,
        type=event_type,
        payload={
            "type": event_type,
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "data": {"organization": "acme", **data},
        },
        created_at=now,
    )
    db.session.add(event)
    db.session.flush()
    dispatch.fan_out(event, now)
    event.dispatched_at = now
    db.session.commit()
    return event


def event_by_id(event_id: str) -> OutboxEvent:
    return db.session.scalar(select(OutboxEvent).where(OutboxEvent.event_id == event_id))
