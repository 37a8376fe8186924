"""``Idempotency-Key`` on POSTs, as Stripe honours it: a repeat gets the first answer back.

The ``stripe`` library sends a key with every POST and reuses it when it retries, so a retry
after a lost response must not create a second customer or session. The key is stored in the
same transaction as the work; two requests racing with one key meet at its primary key, and the
loser rolls back and replays the winner's answer. Only successes are stored.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from flask import Response
from sqlalchemy import delete

from portal.extensions import db
from portal.stripe_sandbox.errors import SandboxError
from portal.stripe_sandbox.models import SandboxIdempotencyKey
from portal.timeutil import utcnow

RETENTION = timedelta(hours=24)


def fingerprint(method: str, path: str, pairs: list[tuple[str, str]]) -> str:
    canonical = "&".join(f"{key}={value}" for key, value in sorted(pairs))
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def replay(key: str, request_fingerprint: str) -> Response | None:
    """The stored answer for ``key``, or None if the key is new."""
    stored = db.session.get(SandboxIdempotencyKey, key)
    if stored is None:
        return None
    if stored.fingerprint != request_fingerprint:
        raise SandboxError(
            "Keys for idempotent requests can only be used with the same parameters they "
            "were first used with.",
            type_="idempotency_error",
        )
    response = Response(stored.body, stored.status_code, mimetype="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    return response


def remember(key: str, request_fingerprint: str, status_code: int, body: str) -> None:
    """Store the answer in the caller's transaction: it commits with the work or not at all."""
    db.session.add(
        SandboxIdempotencyKey(
            key=key, fingerprint=request_fingerprint, status_code=status_code, body=body
        )
    )


def purge() -> int:
    """Forget keys older than Stripe's 24 hours."""
    result = db.session.execute(
        delete(SandboxIdempotencyKey).where(SandboxIdempotencyKey.created_at < utcnow() - RETENTION)
    )
    db.session.commit()
    return result.rowcount
