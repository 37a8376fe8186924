"""A plain Python model of an organization's credit grants, for the grants state machine
(test_grants_stateful.py): grants in burn order, holds, deductions, refunds, expiry sweeps,
claw-backs and debt, with the parts of each grant the database keeps (expired credits that
nothing has swept yet included)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hypothesis import event

from tests.grants_helpers import PARTS


def share(total: int, percent: int) -> int:
    return max(1, total * percent // 100)


@dataclass
class Grant:
    id: int
    kind: str
    priority: int
    expires_at: datetime | None
    created_at: datetime
    amount: int
    remaining: int
    held: int = 0
    consumed: int = 0
    returned: int = 0
    expired: int = 0
    clawed_back: int = 0
    frozen: int = 0
    charged_beyond: int = 0  # spent credits of it that claw-backs took from other grants

    def burn_key(self) -> tuple:
        return (
            self.priority,
            self.expires_at is None,
            self.expires_at or datetime.min,
            self.created_at,
            self.id,
        )

    def lapsed(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def parts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PARTS if getattr(self, name)}


@dataclass
class Taken:
    amount: int
    parts: list[tuple[int, int]]  # (grant, amount) in the order taken
    refunded: int = 0
    open: bool = True  # for holds


@dataclass
class Model:
    now: datetime
    grants: dict[int, Grant] = field(default_factory=dict)
    debt: int = 0
    rows: int = 0
    holds: dict[int, Taken] = field(default_factory=dict)
    deductions: dict[int, Taken] = field(default_factory=dict)

    @property
    def balance(self) -> int:
        return sum(g.remaining + g.held for g in self.grants.values()) - self.debt

    @property
    def reserved(self) -> int:
        return sum(hold.amount for hold in self.holds.values() if hold.open)

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def sweep(self) -> int:
        """Expired grants lose what is left, one ``expire`` row each (held credits stay)."""
        total = 0
        for g in self.grants.values():
            if g.remaining and g.lapsed(self.now):
                g.expired += g.remaining
                total += g.remaining
                g.remaining = 0
                self.rows += 1
        if total:
            event("expired credits swept")
        return total

    def take(self, amount: int, into: str = "consumed") -> list[tuple[int, int]]:
        parts, left = [], amount
        for g in sorted((g for g in self.grants.values() if g.remaining), key=Grant.burn_key):
            if not left:
                break
            piece = min(g.remaining, left)
            g.remaining -= piece
            setattr(g, into, getattr(g, into) + piece)
            parts.append((g.id, piece))
            left -= piece
        assert left == 0, "the model took more than its grants have"
        return parts

    def settle_debt(self) -> None:
        """Credits that arrive pay the debt first (expired ones never do)."""
        if not self.debt:
            return
        self.sweep()
        paid = min(self.debt, sum(g.remaining for g in self.grants.values()))
        if paid:
            event("debt paid by arriving credits")
            self.take(paid)
            self.debt -= paid

    def end_hold(self, hold: Taken, charged: int) -> list[tuple[int, int]]:
        """Charge ``charged`` of the hold in the order it was taken; the rest goes back to its
        grants, or expires now (one row each) where the grant expired meanwhile."""
        hold.open = False
        consumed, left = [], charged
        for grant_id, amount in hold.parts:
            g = self.grants[grant_id]
            use = min(left, amount)
            left -= use
            g.held -= amount
            g.consumed += use
            if use:
                consumed.append((grant_id, use))
            if amount - use and g.lapsed(self.now):
                event("held credits expired with their hold")
                g.expired += amount - use
                self.rows += 1
            else:
                g.remaining += amount - use
        return consumed

    def refund(self, known: Taken, amount: int, returned_to: list[Any], grace: timedelta) -> None:
        """Give ``amount`` of a deduction back, checking the service's ``returned_to``: to the
        grants it came from, the last taken first; a part whose grant expired comes back as a
        new grant (the service's id) of its kind and priority, valid for ``grace``."""
        self.sweep()
        parts = refund_parts(known.parts, known.refunded, amount)
        assert [part.amount for part in returned_to] == [piece for _, piece in parts]
        for (grant_id, piece), returned in zip(parts, returned_to, strict=True):
            g = self.grants[grant_id]
            if not g.lapsed(self.now):
                assert (returned.grant_id, returned.expires_at) == (g.id, g.expires_at)
                g.remaining += piece
                g.returned += piece
                continue
            assert returned.expires_at == self.now + grace
            event("refund to an expired grant: a new grant")
            self.grants[returned.grant_id] = Grant(
                returned.grant_id, g.kind, g.priority, returned.expires_at, self.now, piece, piece
            )
        known.refunded += amount
        self.rows += 1
        self.settle_debt()

    def claw_back(self, paid: Grant, amount: int) -> tuple[int, int]:
        """Take back ``amount`` of a payment's grant: what it has left, then what of it was
        spent from the other grants in burn order, then debt. Returns (taken, owed)."""
        self.sweep()
        own = min(paid.remaining, amount)
        paid.remaining -= own
        paid.clawed_back += own
        beyond = min(amount - own, max(paid.consumed - paid.returned - paid.charged_beyond, 0))
        paid.charged_beyond += beyond
        covered = min(beyond, sum(g.remaining for g in self.grants.values()))
        self.take(covered)
        self.debt += beyond - covered
        event("claw-back into debt" if beyond > covered else "claw-back")
        self.rows += 1
        return own + beyond, beyond - covered

    def next_expiry(self) -> tuple[int, datetime] | None:
        dates = [
            g.expires_at
            for g in self.grants.values()
            if g.remaining and g.expires_at is not None and g.expires_at > self.now
        ]
        if not dates:
            return None
        soonest = min(dates)
        return sum(g.remaining for g in self.grants.values() if g.expires_at == soonest), soonest


def refund_parts(taken: list[tuple[int, int]], refunded: int, amount: int) -> list[tuple[int, int]]:
    """The last taken first, after what earlier refunds already gave back."""
    parts, skip, left = [], refunded, amount
    for grant_id, piece in reversed(taken):
        used = min(skip, piece)
        skip -= used
        give = min(piece - used, left)
        if give:
            parts.append((grant_id, give))
            left -= give
    return parts
