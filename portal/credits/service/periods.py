"""Plan periods: when the next period is paid (or the subscription ends), the old period's plan
credits expire or carry over according to the rollover policy they were granted under.

Periods are Stripe's: a paid invoice or a subscription's end closes them, so the sandbox's
test clock moves them exactly as real time would; ``expires_at`` is only the backstop.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import select, update

from portal.credits.models import CreditGrant
from portal.credits.service import allocation, expiry
from portal.credits.service.ledger import credit, run, transaction
from portal.outbox import events
from portal.timeutil import utcnow

_grants = CreditGrant.__table__


def renewal_grace() -> timedelta:
    """How long carried-over plan credits wait past a period's end for its renewal to be paid
    (Stripe finalizes a renewal invoice about an hour after the period and retries a failed
    payment for days)."""
    return timedelta(hours=int(current_app.config["PORTAL_PLAN_RENEWAL_GRACE_HOURS"]))


def plan_credit_expiry(period_end: datetime | None, rollover: str) -> datetime | None:
    """The backstop expiry of a period's plan credits: its end (plus the renewal grace when
    some of them may carry over)."""
    if period_end is None:
        return None
    return period_end if rollover == "none" else period_end + renewal_grace()


def close_plan_period(
    organization_id: int,
    subscription_ref: str,
    new_period_start: datetime | None,
    new_period_end: datetime | None,
) -> int:
    """The next period is paid: earlier periods' plan credits expire or carry over; returns
    how many micro-credits expired. Idempotent: a carried grant moves into the new period."""
    now = utcnow()
    with transaction():
        allocation.lock_organization(organization_id)
        expired = 0
        for grant in _plan_grants(organization_id, subscription_ref):
            if (
                grant.period_end is not None
                and new_period_end is not None
                and grant.period_end >= new_period_end
            ):
                continue  # this period's own grant, or carried into it already
            carry = _carry_over(grant)
            if carry == 0 or new_period_end is None:
                expired += _expire_now(organization_id, grant, grant.remaining, now)
                continue
            expired += _expire_now(organization_id, grant, grant.remaining - carry, now)
            expires_at = new_period_end + renewal_grace()
            run(
                update(_grants)
                .where(_grants.c.id == grant.id)
                .values(
                    period_end=new_period_end,
                    expires_at=expires_at,
                    carryovers=_grants.c.carryovers + 1,
                ),
                {},
            )
            allocation.note_expiry(organization_id, expires_at)
        return expired


def _carry_over(grant: Any) -> int:
    if grant.rollover == "full":
        return grant.remaining
    if grant.rollover == "capped" and grant.carryovers == 0:
        return min(grant.remaining, grant.rollover_cap or 0)
    return 0


def end_plan_credits(
    organization_id: int,
    subscription_ref: str,
    period_end: datetime | None,
    ended_at: datetime | None,
) -> int:
    """The subscription ended: its plan credits last until the end of the period that was
    paid for, never longer; ended at (or after) that end, they expire now."""
    now = utcnow()
    with transaction():
        allocation.lock_organization(organization_id)
        expired = 0
        for grant in _plan_grants(organization_id, subscription_ref):
            natural_end = period_end is None or ended_at is None or ended_at >= period_end
            if natural_end:
                expired += _expire_now(organization_id, grant, grant.remaining, now)
                continue
            if grant.expires_at is None or grant.expires_at > period_end:
                run(
                    update(_grants)
                    .where(_grants.c.id == grant.id)
                    .values(expires_at=period_end, rollover="none"),
                    {},
                )
                allocation.note_expiry(organization_id, period_end)
        return expired


def _plan_grants(organization_id: int, subscription_ref: str) -> list[Any]:
    return run(
        select(_grants)
        .where(
            _grants.c.organization_id == organization_id,
            _grants.c.subscription_ref == subscription_ref,
            (_grants.c.remaining > 0) | (_grants.c.held > 0),
        )
        .order_by(_grants.c.id)
        .with_for_update(),
        {},
    ).all()


def _expire_now(organization_id: int, grant: Any, amount: int, now: datetime) -> int:
    """Expire ``amount`` of the grant's remaining credits now; a hold keeps what it holds
    until it ends (the grant's expiry moves to now, so the hold's end expires it)."""
    values: dict[str, Any] = {
        "remaining": _grants.c.remaining - amount,
        "expired": _grants.c.expired + amount,
    }
    if amount == grant.remaining and (grant.expires_at is None or grant.expires_at > now):
        values["expires_at"] = now  # all of it ends now, held credits when their hold ends
    run(update(_grants).where(_grants.c.id == grant.id).values(values), {})
    if amount:
        balance, _ = credit(organization_id, -amount)
        expiry.append_expiries(
            organization_id,
            [allocation.Part(grant.id, amount)],
            balance,
            now,
            "Plan credits of an ended period expired",
        )
        events.credits_expired(organization_id, [(grant.id, amount)], now)
    return amount
