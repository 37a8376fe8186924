"""The only writer of balances: every change is one ledger row plus the balance update.

Each verb is one unit of work (``ledger.transaction``): the outermost service call commits once
at its end and inner ones join it, so a grant made while applying a Stripe event lands in the
event's own commit. The verbs live by what they do:

- ``ledger``: the guarded primitives (conditional debits, credits, department charges), the
  ledger appends and the transaction with its after-commit list;
- ``spending``: check, deduct, batches and refunds;
- ``holds``: reserve, capture, release;
- ``grants``: credits entering an organization outside of usage, and history imports;
- ``departments``: departments and their monthly limits.
"""

from portal.credits.results import (
    Balance,
    Batch,
    Capture,
    CheckResult,
    Deduction,
    HistoricEntry,
    Hold,
    Refund,
    Release,
    Spend,
)
from portal.credits.service.departments import create_department, set_department_limit
from portal.credits.service.grants import DuplicateGrant, grant, import_history
from portal.credits.service.holds import capture, release, reserve
from portal.credits.service.ledger import (
    active_feature,
    after_commit,
    department_lookup,
    find_department,
    release_expired_holds,
    transaction,
)
from portal.credits.service.spending import check, deduct, deduct_batch, get_balance, refund

__all__ = [
    "Balance",
    "Batch",
    "Capture",
    "CheckResult",
    "Deduction",
    "DuplicateGrant",
    "HistoricEntry",
    "Hold",
    "Refund",
    "Release",
    "Spend",
    "active_feature",
    "after_commit",
    "capture",
    "check",
    "create_department",
    "deduct",
    "deduct_batch",
    "department_lookup",
    "find_department",
    "get_balance",
    "grant",
    "import_history",
    "refund",
    "release",
    "release_expired_holds",
    "reserve",
    "set_department_limit",
    "transaction",
]
