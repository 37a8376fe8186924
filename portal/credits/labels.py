"""How ledger kinds and grants read on pages: one table, used by every template
(``ledger_kind``, ``grant_source``, ``grant_state`` filters) and by the transactions page's
kind filter."""

from __future__ import annotations

from typing import Any

from portal.credits.models import LEDGER_KINDS
from portal.timeutil import utcnow

# Badges are capitalized by CSS; the older kinds keep the words they always showed.
KIND_LABELS = {
    "grant": "grant",
    "purchase": "purchase",
    "subscription": "subscription",
    "signup_bonus": "signup bonus",
    "adjustment": "adjustment",
    "opening": "opening balance",
    "deduct": "deduct",
    "refund": "refund",
    "expire": "expired",
    "clawback": "clawed back",
    "freeze": "on hold: disputed",
    "unfreeze": "hold released",
}
assert set(KIND_LABELS) == set(LEDGER_KINDS), "every ledger kind needs a label"

# Where a grant's credits came from, as a person would say it.
GRANT_SOURCES = {
    "signup_bonus": "Sign-up bonus",
    "purchase": "Credit purchase",
    "subscription": "Plan credits",
    "grant": "Granted by the portal team",
    "adjustment": "Adjustment",
    "opening": "Opening balance",
}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " "))


def grant_source(grant: Any) -> str:
    """A grant's origin; credits refunded after their grant expired say so."""
    if getattr(grant, "source_type", None) == "refund":
        return "Refunded credits"
    return GRANT_SOURCES.get(grant.kind, grant.kind.replace("_", " ").capitalize())


def kind_choices() -> list[tuple[str, str]]:
    """(kind, label) for a kind filter, in ledger order."""
    return [(kind, KIND_LABELS[kind].capitalize()) for kind in LEDGER_KINDS]


def grant_state(grant: Any) -> str:
    """One word for where a grant stands now (a badge; ``badge-grant-<state>`` styles it)."""
    if grant.is_expired(utcnow()):
        return "expired"
    if grant.remaining > 0 or grant.held > 0:
        return "active"
    if grant.frozen > 0:
        return "on hold"
    if grant.clawed_back > 0:
        return "clawed back"
    return "used up"
