"""What a Stripe event's handler answers: a note, and the one change of credits it completes.

Handlers (``fulfilment``, ``chargebacks``) stage their rows and return an ``Outcome``;
``service.process_event`` records the event and carries out its ``Credit`` last, after a
duplicate check, inside the event's one transaction. The credit's ledger row is unique by
``(kind, source_ref)``, so the same change is never made twice, whichever events ask for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from portal.credits.service import GrantTerms
from portal.errors import PortalError
from portal.extensions import db

Event = dict[str, Any]
# Ledger kinds that take from (or give back to) one payment's grant instead of adding one.
CLAWS = ("clawback", "freeze", "unfreeze")


class RetryLater(PortalError):
    """The event cannot be applied yet (what it refers to has not arrived): 5xx, Stripe retries."""

    status = 500
    code = "retry_later"


@dataclass(frozen=True)
class Credit:
    """The change of credits that completes an event; its ledger ``kind`` says which:

    - ``purchase``, ``subscription``: a new grant of ``amount`` on ``terms``;
    - ``adjustment``: a negative ``amount`` in burn order (refunds of payments made before
      credit grants existed, whose credits sit in the organization's opening grant);
    - ``clawback`` (``amount``), ``freeze``, ``unfreeze`` (the grant's remaining or frozen
      credits): on the grant that ``grant_ref`` made (``checkout:<cs>``, ``invoice:<in>``).

    ``applied`` is told how many credits moved, so the row that asked can remember it.
    """

    organization_id: int
    amount: int
    kind: str
    source_ref: str
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    terms: GrantTerms | None = None
    grant_ref: str | None = None
    allow_negative_balance: bool = False
    applied: Callable[[int], None] | None = None

    def __post_init__(self) -> None:
        if (self.kind in CLAWS) != (self.grant_ref is not None):
            raise ValueError(f"a {self.kind} names a grant_ref exactly when it is one of {CLAWS}")


@dataclass(frozen=True)
class Outcome:
    note: str
    credit: Credit | None = None
    alert: bool = False  # a human should look: logged as a warning


def locked(model: Any, column: Any, value: str) -> Any:
    """The row whose ``column`` is ``value``, read ``FOR UPDATE`` and fresh from the database."""
    return db.session.scalar(
        select(model)
        .where(column == value)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
