"""Importing past ledger entries: credits become grants, deductions burn them in order.

The burn is replayed in memory (imported grants never expire) and written in bulk: one
``INSERT`` per run of rows, except a deduction that spans several grants, which is written
alone so its allocation rows can name it. Ids stay in time order, as the usage rollup expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from portal.credits.models import DEFAULT_PRIORITY, CreditGrant, GrantAllocation, LedgerEntry
from portal.credits.results import HistoricEntry
from portal.credits.service.allocation import BURN_ORDER, LedgerOutOfBalance, new_grant_row
from portal.credits.service.ledger import run

_grants = CreditGrant.__table__
_ledger = LedgerEntry.__table__


@dataclass
class _Grant:
    id: int
    priority: int
    expires_at: datetime | None
    created_at: datetime
    remaining: int
    consumed: int = 0
    returned: int = 0

    def burn_key(self) -> tuple[Any, ...]:
        far = datetime.max
        return (
            self.priority,
            self.expires_at is None,
            self.expires_at or far,
            self.created_at,
            self.id,
        )


class _Burn:
    def __init__(self, organization_id: int) -> None:
        self.organization_id = organization_id
        rows = run(
            select(_grants)
            .where(_grants.c.organization_id == organization_id, _grants.c.remaining > 0)
            .order_by(*BURN_ORDER),
            {},
        ).all()
        self.grants = [
            _Grant(row.id, row.priority, row.expires_at, row.created_at, row.remaining)
            for row in rows
        ]
        self.touched: set[int] = set()
        self.taken: list[tuple[int, int]] = []  # (grant id, amount) in order, for refunds

    def add(self, entry: HistoricEntry) -> int:
        grant_id = run(
            insert(_grants).returning(_grants.c.id),
            new_grant_row(
                self.organization_id,
                entry.kind,
                entry.amount,
                priority=DEFAULT_PRIORITY[entry.kind],
                expires_at=None,
                description=entry.description,
                source_type="opening" if entry.kind == "opening" else "system",
                now=entry.created_at,
                source_ref=entry.source_ref,
            ),
        ).scalar_one()
        self.grants.append(
            _Grant(grant_id, DEFAULT_PRIORITY[entry.kind], None, entry.created_at, entry.amount)
        )
        return grant_id

    def take(self, amount: int) -> list[tuple[int, int]]:
        parts, left = [], amount
        for grant in sorted(self.grants, key=_Grant.burn_key):
            if not left:
                break
            piece = min(grant.remaining, left)
            if piece:
                grant.remaining -= piece
                grant.consumed += piece
                self.touched.add(grant.id)
                parts.append((grant.id, piece))
                left -= piece
        if left:
            raise LedgerOutOfBalance(f"imported history is {left} micro-credits short")
        self.taken += parts
        return parts

    def give_back(self, amount: int) -> list[tuple[int, int]]:
        """An imported refund names no deduction: it goes back to what was taken last."""
        parts, left = [], amount
        by_id = {grant.id: grant for grant in self.grants}
        while left and self.taken:
            grant_id, piece = self.taken.pop()
            give = min(piece, left)
            if give < piece:
                self.taken.append((grant_id, piece - give))
            grant = by_id[grant_id]
            grant.remaining += give
            grant.returned += give
            self.touched.add(grant_id)
            parts.append((grant_id, give))
            left -= give
        if left:
            raise LedgerOutOfBalance(f"imported refunds exceed imported deductions by {left}")
        return parts

    def save(self) -> None:
        for grant in self.grants:
            if grant.id in self.touched:
                run(
                    update(_grants)
                    .where(_grants.c.id == grant.id)
                    .values(
                        remaining=grant.remaining,
                        consumed=_grants.c.consumed + grant.consumed,
                        returned=_grants.c.returned + grant.returned,
                    ),
                    {},
                )


def _row(organization_id: int, entry: HistoricEntry, balance_after: int) -> dict[str, Any]:
    return {
        "organization_id": organization_id,
        "kind": entry.kind,
        "amount": entry.amount,
        "balance_after": balance_after,
        "feature_key": entry.feature_key,
        "unit_price": entry.unit_price,
        "quantity": entry.quantity,
        "department_id": entry.department_id,
        "user_ref": entry.user_ref,
        "description": entry.description,
        "source_ref": entry.source_ref,
        "created_at": entry.created_at,
        "grant_id": None,
        # Only when given: a JSON column would store None as JSON null, not NULL.
        **({"metadata": entry.metadata} if entry.metadata is not None else {}),
    }


def history_rows(organization_id: int, entries: list[HistoricEntry], balance: int) -> None:
    """Write ``entries`` (in time order, already checked) starting from ``balance``."""
    burn = _Burn(organization_id)
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        for chunk in _by_columns(pending):
            run(insert(_ledger), chunk)
        pending.clear()

    for entry in entries:
        balance += entry.amount
        row = _row(organization_id, entry, balance)
        if entry.amount > 0 and entry.kind not in ("deduct", "refund"):
            row["grant_id"] = burn.add(entry)
            parts = [(row["grant_id"], entry.amount)]
        elif entry.amount > 0:
            parts = burn.give_back(entry.amount)
        else:
            parts = burn.take(-entry.amount)
        if len(parts) <= 1:
            row["grant_id"] = parts[0][0] if parts else None
            pending.append(row)
            continue
        flush()
        entry_id = run(insert(_ledger).returning(_ledger.c.id), row).scalar_one()
        sign = -1 if entry.amount > 0 else 1
        run(
            insert(GrantAllocation),
            [
                {
                    "grant_id": grant_id,
                    "ledger_entry_id": entry_id,
                    "amount": sign * amount,
                    "created_at": entry.created_at,
                }
                for grant_id, amount in parts
            ],
        )
    flush()
    burn.save()


def _by_columns(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Consecutive runs of rows with the same keys: one executemany each, order kept."""
    runs: list[list[dict[str, Any]]] = []
    for row in rows:
        if runs and runs[-1][0].keys() == row.keys():
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs
