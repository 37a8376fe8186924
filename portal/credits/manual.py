"""Manual grants: credits an operator adds (or takes) by hand.

One set of rules for ``flask credits grant``, the admin organization page and ``POST
/api/admin/organizations/<slug>/grants``, so the three refuse exactly the same input. A
positive amount is a ``grant`` (priority 10 unless told, never expires unless told); a
negative one is an ``adjustment`` that takes credits in burn order, so an expiry or a
priority means nothing for it and is refused rather than ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from portal.contract.fields import check_text
from portal.credits import queries, service
from portal.credits.models import CreditGrant, LedgerEntry
from portal.errors import InvalidRequest
from portal.extensions import db
from portal.money import MICRO
from portal.timeutil import utcnow

# Typo guards, not policies: a larger correction can be made in several steps, and a grant
# meant to last longer than ten years may as well never expire.
MAX_CREDITS = 1_000_000_000 * MICRO
MAX_EXPIRY_DAYS = 3650
MIN_PRIORITY, MAX_PRIORITY = 0, 1000
MAX_REASON = 500


@dataclass(frozen=True)
class ManualGrant:
    """What an operator asked for; ``check`` says what is wrong with it, field by field."""

    amount: int  # micro-credits, already parsed by portal.money (typed) or the contract (JSON)
    reason: str
    expires_in_days: int | None = None
    expires_at: datetime | None = None  # naive UTC
    priority: int | None = None

    @property
    def kind(self) -> str:
        return "grant" if self.amount > 0 else "adjustment"

    def check(self, now: datetime) -> None:
        if self.amount == 0:
            raise InvalidRequest("amount", "must not be zero")
        if abs(self.amount) > MAX_CREDITS:
            raise InvalidRequest("amount", "must be at most 1,000,000,000 credits either way")
        check_text(self.reason, "reason")
        if not self.reason.strip():
            raise InvalidRequest("reason", "is required: it is shown in the ledger")
        if len(self.reason.strip()) > MAX_REASON:
            raise InvalidRequest("reason", f"must be at most {MAX_REASON} characters")
        if self.expires_in_days is not None and self.expires_at is not None:
            raise InvalidRequest("expires_at", "give expires_in_days or expires_at, not both")
        if self.amount < 0:
            for name in ("expires_in_days", "expires_at", "priority"):
                if getattr(self, name) is not None:
                    raise InvalidRequest(
                        name,
                        "applies only to credits added: a negative amount takes "
                        "credits in burn order",
                    )
        if self.expires_in_days is not None and not 1 <= self.expires_in_days <= MAX_EXPIRY_DAYS:
            raise InvalidRequest("expires_in_days", f"must be between 1 and {MAX_EXPIRY_DAYS}")
        if self.expires_at is not None:
            if self.expires_at <= now:
                raise InvalidRequest("expires_at", "must be in the future")
            if self.expires_at > now + timedelta(days=MAX_EXPIRY_DAYS):
                raise InvalidRequest("expires_at", "must be within ten years")
        if self.priority is not None and not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise InvalidRequest("priority", f"must be between {MIN_PRIORITY} and {MAX_PRIORITY}")

    def expiry(self, now: datetime) -> datetime | None:
        if self.expires_in_days is not None:
            return now + timedelta(days=self.expires_in_days)
        return self.expires_at


def give(
    organization_id: int,
    request: ManualGrant,
    *,
    user_id: int | None = None,
    source_ref: str | None = None,
) -> service.Granted:
    """Check ``request`` and apply it through the credits service, or raise and write nothing
    (``InvalidRequest``, ``InsufficientCredits`` for a negative amount beyond what is
    available, ``DuplicateGrant`` for a ``source_ref`` already applied)."""
    now = utcnow()
    request.check(now)
    return service.grant(
        organization_id,
        request.amount,
        request.kind,
        description=request.reason.strip(),
        user_id=user_id,
        source_ref=source_ref,
        terms=service.GrantTerms(expires_at=request.expiry(now), priority=request.priority),
    )


def granted_json(granted: service.Granted) -> dict[str, Any]:
    """The new grant as the API lists it; a negative adjustment makes no grant, so its
    ledger row (as ``/transactions`` lists it) instead."""
    if granted.grant_id is not None:
        grant = db.session.get(CreditGrant, granted.grant_id)
        return {**queries.grant_json(grant), "source_type": grant.source_type}
    entry = db.session.get(LedgerEntry, granted.entry_id)
    return queries.ledger_row_json(entry, queries.department_names(entry.organization_id))
