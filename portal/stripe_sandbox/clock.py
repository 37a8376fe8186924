"""The test clock: ``flask stripe advance --days N`` moves sandbox time and renews what is due."""

from __future__ import annotations

from dataclasses import dataclass

from portal.stripe_sandbox import store, subscriptions
from portal.stripe_sandbox.events import commit

DAY = 86_400


@dataclass(frozen=True)
class Advanced:
    now: int
    renewals: int
    recovered: int


def advance(seconds: int, *, fail_payment: bool = False) -> Advanced:
    """Move the clock, renew or end each due period, then retry what is owed (unless failing).

    Everything commits at once: the portal hears of all of it, or of none.
    """
    if seconds < 0:
        raise ValueError("The test clock only moves forward.")
    now = store.shift_clock(seconds)
    renewals = 0
    for subscription in store.all_of("subscription"):
        if subscription.data["status"] in subscriptions.LIVE_STATUSES:
            row = store.get("subscription", subscription.id, lock=True)
            renewals += subscriptions.renew_due(row, now, fail_payment=fail_payment)
    # Retries come after renewals (which are dated at their period boundary, in the past), so
    # event ``created`` times never go backwards.
    recovered = 0
    if not fail_payment:
        for invoice in store.all_of("invoice"):
            if invoice.data["status"] == "open":
                subscriptions.recover(store.get("invoice", invoice.id, lock=True))
                recovered += 1
    commit()
    return Advanced(now, renewals, recovered)
