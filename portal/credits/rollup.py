"""Daily usage rollups: charts and month totals without scanning the whole ledger.

The ledger is append-only and its ids only grow, so a rollup can be brought up to date by
folding in the rows with an id above the last one folded. Each organization's fold runs
under a lock on its state row, so two page views never count the same rows twice.
"""

from __future__ import annotations

from sqlalchemy import case, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from portal.credits.models import LedgerEntry, UsageRollup, UsageRollupState
from portal.extensions import db
from portal.timeutil import utcnow


def _lock_state(organization_id: int) -> UsageRollupState:
    for _ in range(2):
        state = db.session.scalar(
            select(UsageRollupState)
            .where(UsageRollupState.organization_id == organization_id)
            .with_for_update()
        )
        if state is not None:
            return state
        try:
            db.session.add(UsageRollupState(organization_id=organization_id, last_ledger_id=0))
            db.session.flush()
        except IntegrityError:  # another request created it first; lock that one
            db.session.rollback()
    raise RuntimeError("could not lock the usage rollup state")


def refresh(organization_id: int) -> int:
    """Fold new ledger rows of one organization into its rollup; returns groups touched."""
    state = _lock_state(organization_id)
    newest = db.session.scalar(
        select(func.max(LedgerEntry.id)).where(
            LedgerEntry.organization_id == organization_id,
            LedgerEntry.id > state.last_ledger_id,
        )
    )
    if newest is None:
        db.session.commit()
        return 0
    day = func.date(LedgerEntry.created_at)
    department = func.coalesce(LedgerEntry.department_id, 0)
    feature = func.coalesce(LedgerEntry.feature_key, "")
    grouped = (
        select(
            literal(organization_id),
            day,
            feature,
            department,
            func.sum(-LedgerEntry.amount),
            func.sum(case((LedgerEntry.kind == "deduct", 1), else_=0)),
        )
        .where(
            LedgerEntry.organization_id == organization_id,
            LedgerEntry.id > state.last_ledger_id,
            LedgerEntry.id <= newest,
            LedgerEntry.kind.in_(("deduct", "refund")),
        )
        .group_by(day, feature, department)
    )
    # One INSERT … SELECT … ON CONFLICT: the database folds a million rows without shipping
    # them to Python.
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(UsageRollup).from_select(
        ["organization_id", "day", "feature_key", "department_id", "credits", "count"], grouped
    )
    result = db.session.execute(
        stmt.on_conflict_do_update(
            index_elements=["organization_id", "day", "feature_key", "department_id"],
            set_={
                "credits": UsageRollup.credits + stmt.excluded.credits,
                "count": UsageRollup.count + stmt.excluded.count,
            },
        )
    )
    folded = result.rowcount
    db.session.execute(
        update(UsageRollupState)
        .where(UsageRollupState.organization_id == organization_id)
        .values(last_ledger_id=newest, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return folded
