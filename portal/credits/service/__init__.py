"""The only writer of balances: every change is one ledger row plus the balance update.

Each verb is one unit of work (``ledger.transaction``): the outermost service call commits once
at its end and inner ones join it, so a grant made while applying a Stripe event lands in the
event's own commit. The verbs live by what they do:

- ``ledger``: the guarded primitives (conditional debits, credits, department charges), the
  ledger appends and the transaction with its after-commit list;
- ``spending``: check, deduct, batches and refunds;
- ``holds``: reserve, capture, release;
- ``grants``: credits entering an organization outside of usage, expiry sweeps, and history
  imports (``history``); ``periods``: plan credits when a period closes (rollover);
- ``claws``: taking a payment's credits back (refunds, lost disputes) and freezing them
  while a dispute is open;
- ``allocation``: which grants credits come from and go back to (burn order, refunds);
  ``expiry``: what ends (holds, grants past their expiry); ``debt``: claw-backs beyond the
  grants, and new credits paying them first;
- ``guard``: the debit's conditional UPDATE and its slow path;
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
from portal.credits.service.allocation import LedgerOutOfBalance
from portal.credits.service.claws import clawback, freeze, unfreeze
from portal.credits.service.departments import create_department, set_department_limit
from portal.credits.service.grants import (
    DuplicateGrant,
    Granted,
    GrantTerms,
    expire_due,
    expire_due_by_organization,
    expire_organization,
    grant,
    import_history,
)
from portal.credits.service.guard import release_expired_holds
from portal.credits.service.holds import capture, release, reserve
from portal.credits.service.ledger import (
    active_feature,
    after_commit,
    department_lookup,
    find_department,
    in_transaction,
    recorded,
    transaction,
)
from portal.credits.service.periods import close_plan_period, end_plan_credits, plan_credit_expiry
from portal.credits.service.spending import (
    check,
    deduct,
    deduct_batch,
    get_balance,
    refund,
    sweep_due,
)

__all__ = [
    "Balance",
    "Batch",
    "Capture",
    "CheckResult",
    "Deduction",
    "DuplicateGrant",
    "GrantTerms",
    "Granted",
    "HistoricEntry",
    "Hold",
    "LedgerOutOfBalance",
    "Refund",
    "Release",
    "Spend",
    "active_feature",
    "after_commit",
    "capture",
    "check",
    "clawback",
    "close_plan_period",
    "create_department",
    "deduct",
    "deduct_batch",
    "department_lookup",
    "end_plan_credits",
    "expire_due",
    "expire_due_by_organization",
    "expire_organization",
    "find_department",
    "freeze",
    "get_balance",
    "grant",
    "import_history",
    "in_transaction",
    "plan_credit_expiry",
    "recorded",
    "refund",
    "release",
    "release_expired_holds",
    "reserve",
    "set_department_limit",
    "sweep_due",
    "transaction",
    "unfreeze",
]
