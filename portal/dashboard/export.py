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
                    entry.feature_key,
                    micros_to_decimal(entry.quantity or 0),
                    micros_to_decimal(entry.unit_price or 0),
                    micros_to_decimal(-entry.amount),
                    departments.get(entry.department_id, "") if entry.department_id else "",
                    entry.user_ref or "",
                    entry.description or "",
                ]
            )
        yield flush()
        # Each batch is its own short transaction, and the identity map is emptied, so a
        # million-row export neither holds a lock nor keeps rows in memory.
        db.session.expunge_all()
        db.session.commit()
        if before is None:
            break
