"""CSV export of usage, streamed in keyset batches so memory stays flat for any size."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from portal.credits.queries import LedgerFilter, Position, department_names, ledger_entries
from portal.extensions import db
from portal.money import micros_to_decimal
from portal.timeutil import isoformat_z

BATCH = 2_000
# A spreadsheet treats a cell starting with one of these as a formula (OWASP's CSV injection
# list; tab and CR because some spreadsheets skip them before a formula).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HEADER = [
    "id",
    "created_at",
    "feature_key",
    "quantity",
    "unit_price",
    "credits",
    "department",
    "user",
    "description",
]


def defused(text: str) -> str:
    """A text cell a spreadsheet shows as typed: a leading ``'`` stops a formula from running.

    Only text columns pass through here; amounts are written as numbers, so a negative amount
    (``-5``) stays a number that sums.
    """
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def usage_csv(filters: LedgerFilter) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(HEADER)
    yield flush()
    departments = department_names(filters.organization_id)
    before: Position | None = None
    while True:
        entries, before = ledger_entries(filters, kinds=("deduct",), limit=BATCH, before=before)
        for entry in entries:
            writer.writerow(
                [
                    entry.id,
                    isoformat_z(entry.created_at),
                    defused(entry.feature_key),
                    micros_to_decimal(entry.quantity or 0),
                    micros_to_decimal(entry.unit_price or 0),
                    micros_to_decimal(-entry.amount),
                    defused(departments.get(entry.department_id, "")),
                    defused(entry.user_ref or ""),
                    defused(entry.description or ""),
                ]
            )
        yield flush()
        # Each batch is its own short transaction, and the identity map is emptied, so a
        # million-row export neither holds a lock nor keeps rows in memory.
        db.session.expunge_all()
        db.session.commit()
        if before is None:
            break
