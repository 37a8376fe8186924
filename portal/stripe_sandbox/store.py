"""The sandbox's storage: Stripe-like ids, the test clock, and objects kept as JSON documents.

Callers change a document by building a new dict and handing it to ``save``: JSON columns do
not track in-place mutation, so a copy-and-save rule is the one that cannot silently lose a
change. Rows read for a change are locked (``FOR UPDATE`` on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` already serialises writers), so two clicks on "Pay" cannot both pay.
"""

from __future__ import annotations

import copy
import secrets
import string
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, has_request_context, request
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.stripe_sandbox.errors import SandboxError, no_such
from portal.stripe_sandbox.models import SandboxObject, SandboxState

_ALPHABET = string.ascii_letters + string.digits
STATE_ID = 1
DEFAULT_PAGE = 10
MAX_PAGE = 100


def new_id(prefix: str, length: int = 24) -> str:
    """``cus_…``-style ids; long enough that an id in a URL works as a capability."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


# --- account state: the test clock and the last API host ---------------------------------


def _state() -> SandboxState | None:
    return db.session.get(SandboxState, STATE_ID)


def _ensure_state() -> None:
    """Create the single state row if it is missing (tests truncate it away between runs)."""
    if _state() is not None:
        return
    try:
        with db.session.begin_nested():
            db.session.add(SandboxState(id=STATE_ID, clock_offset=0))
    except IntegrityError:
        pass  # another process created it first: fine, it is the same row


def clock_offset() -> int:
    state = _state()
    return state.clock_offset if state else 0


def now() -> int:
    """Sandbox time in unix seconds: wall-clock time moved forward by the test clock."""
    return int(time.time()) + clock_offset()


def shift_clock(seconds: int) -> int:
    """Move the test clock forward; returns the new sandbox time."""
    _ensure_state()
    db.session.execute(
        update(SandboxState)
        .where(SandboxState.id == STATE_ID)
        .values(clock_offset=SandboxState.clock_offset + seconds)
        .execution_options(synchronize_session=False)
    )
    db.session.expire_all()
    return now()


def remember_api_host(host_url: str) -> None:
    """Record where the portal's API calls come from (the fallback webhook host)."""
    state = _state()
    if state is not None and state.last_api_host_url == host_url:
        return
    _ensure_state()
    db.session.execute(
        update(SandboxState)
        .where(SandboxState.id == STATE_ID)
        .values(last_api_host_url=host_url)
        .execution_options(synchronize_session=False)
    )


def last_api_host() -> str | None:
    state = _state()
    return state.last_api_host_url if state else None


def public_base() -> str:
    """The portal's URL as browsers see it, for hosted-page links: no trailing slash."""
    configured = current_app.config.get("PORTAL_BASE_URL")
    if configured:
        return configured.rstrip("/")
    if has_request_context():
        return request.host_url.rstrip("/")
    return (last_api_host() or "http://localhost:5000").rstrip("/")


# --- objects -------------------------------------------------------------------------------


def find(object_id: str, *, lock: bool = False) -> SandboxObject | None:
    query = select(SandboxObject).where(SandboxObject.id == object_id)
    if lock:
        # Refresh a row this session already holds: the locked read is the one to trust.
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.scalar(query)


def get(
    type_: str, object_id: str | None, *, lock: bool = False, param: str = "id"
) -> SandboxObject:
    """The object or Stripe's 404 (``No such customer: 'cus_…'``)."""
    row = find(object_id, lock=lock) if object_id else None
    if row is None or row.type != type_:
        raise no_such(type_.replace("_", " "), object_id or "", param)
    return row


def doc(row: SandboxObject) -> dict[str, Any]:
    """A private copy of the document, safe to change before ``save``."""
    return copy.deepcopy(row.data)


def _indexed(data: dict[str, Any]) -> tuple[str | None, str | None]:
    customer = data.get("customer")
    return (customer if isinstance(customer, str) else None), data.get("lookup_key")


def add(data: dict[str, Any]) -> SandboxObject:
    customer, lookup_key = _indexed(data)
    row = SandboxObject(
        id=data["id"],
        type=data["object"],
        customer=customer,
        lookup_key=lookup_key,
        created=data["created"],
        data=data,
    )
    db.session.add(row)
    _flush_or_conflict()
    return row


def save(row: SandboxObject, data: dict[str, Any]) -> None:
    row.customer, row.lookup_key = _indexed(data)
    row.data = copy.deepcopy(data)
    _flush_or_conflict()


def _flush_or_conflict() -> None:
    """Flush now, so a duplicate lookup key is a 400 here rather than a 500 at commit."""
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise SandboxError(
            "Another object already uses that lookup key or id.", code="resource_already_exists"
        ) from exc


def page(
    type_: str,
    *conditions: Any,
    where: Callable[[dict[str, Any]], bool] | None = None,
    limit: int | None = None,
    starting_after: str | None = None,
    ending_before: str | None = None,
) -> tuple[list[SandboxObject], bool]:
    """One page of a type, newest first, with Stripe's cursor parameters.

    SQL narrows by the indexed columns; ``where`` filters on document fields in Python, which
    is plenty for a sandbox's few thousand objects and keeps every filter in one shape.
    """
    size = DEFAULT_PAGE if limit is None else limit
    if not 1 <= size <= MAX_PAGE:
        raise SandboxError("Invalid limit: must be between 1 and 100", param="limit")
    query = select(SandboxObject).where(SandboxObject.type == type_, *conditions)
    rows = list(db.session.scalars(query.order_by(SandboxObject.pk.desc())))
    if where is not None:
        rows = [row for row in rows if where(row.data)]
    if starting_after:
        cursor = get(type_, starting_after, param="starting_after")
        rows = [row for row in rows if row.pk < cursor.pk]
        return rows[:size], len(rows) > size
    if ending_before:
        cursor = get(type_, ending_before, param="ending_before")
        rows = [row for row in rows if row.pk > cursor.pk]
        return rows[-size:], len(rows) > size
    return rows[:size], len(rows) > size


def all_of(type_: str, *conditions: Any) -> list[SandboxObject]:
    """Every object of a type, oldest first: for the clock, which must visit them all."""
    query = select(SandboxObject).where(SandboxObject.type == type_, *conditions)
    return list(db.session.scalars(query.order_by(SandboxObject.pk)))


def list_object(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}
