"""Taking a payment's credits back: refunds and lost disputes claw back, open disputes freeze.

A claw-back takes from the payment's own grant first (frozen credits, then remaining ones).
What that grant no longer has because it was *spent* is taken from the organization's other
grants in burn order, and what they cannot cover becomes debt: the balance goes negative, is
shown as owed, and the next credits to arrive pay it first. Credits of the grant that simply
expired are not charged again. Each step is one ledger row, made once by its ``source_ref``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from portal.credits.models import CreditGrant, LedgerEntry
from portal.credits.service import allocation, debt, expiry
from portal.credits.service.grants import DuplicateGrant
from portal.credits.service.ledger import append, credit, recorded, run, transaction
from portal.errors import NotFound
from portal.extensions import db
from portal.timeutil import utcnow

_grants = CreditGrant.__table__


class GrantNotFound(NotFound):
    code = "grant_not_found"


@dataclass(frozen=True)
class Clawed:
    entry_id: int
    taken: int  # from the balance (the grant's remaining and other grants, and debt)
    forfeited: int  # frozen credits that were already out of the balance
    owed: int  # of ``taken``, what became debt


def _once(kind: str, source_ref: str) -> None:
    if recorded(kind, source_ref):
        raise DuplicateGrant(f"{kind} for {source_ref} was already applied.")


def _payment_grant(organization_id: int, grant_ref: str) -> Any:
    grant = run(
        select(_grants)
        .where(_grants.c.organization_id == organization_id, _grants.c.source_ref == grant_ref)
        .order_by(_grants.c.id)
        .limit(1)
        .with_for_update(),
        {},
    ).one_or_none()
    if grant is None:
        raise GrantNotFound(f"No grant from {grant_ref}.")
    return grant


def _charged_beyond(grant_id: int) -> int:
    """Spent credits of this grant that earlier claw-backs already charged elsewhere."""
    metas = db.session.scalars(
        select(LedgerEntry.meta).where(
            LedgerEntry.kind == "clawback", LedgerEntry.grant_id == grant_id
        )
    ).all()
    return sum(int((meta or {}).get("beyond_grant", 0)) for meta in metas)


def clawback(
    organization_id: int,
    grant_ref: str,
    amount: int,
    *,
    source_ref: str,
    description: str,
    metadata: dict[str, Any] | None = None,
) -> Clawed:
    """Take back ``amount`` credits of the grant made by ``grant_ref`` (``checkout:<cs>``)."""
    _once("clawback", source_ref)
    with transaction():
        now = utcnow()
        allocation.lock_organization(organization_id)
        expiry.expire_if_due(organization_id, now)
        grant = _payment_grant(organization_id, grant_ref)
        from_frozen = min(grant.frozen, amount)
        from_own = min(grant.remaining, amount - from_frozen)
        run(
            update(_grants)
            .where(_grants.c.id == grant.id)
            .values(
                frozen=_grants.c.frozen - from_frozen,
                remaining=_grants.c.remaining - from_own,
                clawed_back=_grants.c.clawed_back + from_frozen + from_own,
            ),
            {},
        )
        spent = max(grant.consumed - grant.returned - _charged_beyond(grant.id), 0)
        beyond = min(amount - from_frozen - from_own, spent)
        others, owed = debt.take_or_owe(organization_id, beyond)
        taken = from_own + beyond
        balance, _ = credit(organization_id, -taken)
        entry_id = append(
            organization_id,
            "clawback",
            -taken,
            balance,
            grant_id=grant.id,
            source_ref=source_ref,
            description=description,
            meta={
                **(metadata or {}),
                "from_grant": from_own,
                "from_frozen": from_frozen,
                "beyond_grant": beyond,
                "owed": owed,
            },
            created_at=now,
        )
        if others:  # the row names the payment's grant: the others need rows of their own
            own = [allocation.Part(grant.id, from_own)] if from_own else []
            allocation.record(own + others, ledger_entry_id=entry_id, always=True, now=now)
    return Clawed(entry_id, taken, from_frozen, owed)


def freeze(
    organization_id: int,
    grant_ref: str,
    *,
    source_ref: str,
    description: str,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Put what is left of the payment's grant on hold (out of the balance, not spendable)."""
    return _shift_frozen(organization_id, grant_ref, "freeze", source_ref, description, metadata)


def unfreeze(
    organization_id: int,
    grant_ref: str,
    *,
    source_ref: str,
    description: str,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Give frozen credits back to their grant (a dispute won); they keep its expiry."""
    return _shift_frozen(organization_id, grant_ref, "unfreeze", source_ref, description, metadata)


def _shift_frozen(
    organization_id: int,
    grant_ref: str,
    kind: str,
    source_ref: str,
    description: str,
    metadata: dict[str, Any] | None,
) -> int:
    """Move the grant's remaining credits into ``frozen`` (``freeze``) or back (``unfreeze``):
    one ledger row either way, the balance down or up by as much."""
    _once(kind, source_ref)
    freezing = kind == "freeze"
    with transaction():
        now = utcnow()
        allocation.lock_organization(organization_id)
        if freezing:  # never freeze credits that have expired (nothing swept them yet)
            expiry.expire_if_due(organization_id, now)
        grant = _payment_grant(organization_id, grant_ref)
        amount = grant.remaining if freezing else grant.frozen
        change = -amount if freezing else amount
        run(
            update(_grants)
            .where(_grants.c.id == grant.id)
            .values(
                remaining=_grants.c.remaining + change,
                frozen=_grants.c.frozen - change,
            ),
            {},
        )
        balance, _ = credit(organization_id, change)
        entry_id = append(
            organization_id,
            kind,
            change,
            balance,
            grant_id=grant.id,
            source_ref=source_ref,
            description=description,
            meta=metadata,
            created_at=now,
        )
        if amount and not freezing:
            allocation.note_expiry(organization_id, grant.expires_at)
            debt.settle_debt(organization_id, entry_id, now)
    return amount
