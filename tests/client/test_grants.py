"""The client's view of the credit lifecycle against a live portal: grants, the balance's
next expiry, on-hold and owed credits, refunds' returned_to, transactions by kind."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from portal.client import AsyncCreditClient, CreditClient, Expiry, Grant
from tests.live import LivePortal, OrgKey, Seeder


def test_balance_names_the_next_expiry_and_what_is_on_hold(
    client: CreditClient, seeder: Seeder, org: OrgKey
) -> None:
    assert client.balance().next_expiry is None
    seeder.grant(org.slug, "5", days=10)
    seeder.grant(org.slug, "2.5", days=3)
    seeder.grant(org.slug, "40", kind="purchase", source_ref=f"checkout:cs_{org.slug}")
    seeder.freeze(org.slug, f"checkout:cs_{org.slug}")

    balance = client.balance()

    assert isinstance(balance.next_expiry, Expiry)
    assert balance.next_expiry.amount == Decimal("2.5")
    in_three_days = datetime.now(UTC) + timedelta(days=3)
    assert abs(balance.next_expiry.expires_at - in_three_days) < timedelta(minutes=5)
    assert (balance.balance, balance.on_hold, balance.owed) == (Decimal("1007.5"), 40, 0)


def test_grants_iterate_every_page_by_status(
    client: CreditClient, seeder: Seeder, org: OrgKey
) -> None:
    made = [seeder.grant(org.slug, str(n), days=30) for n in (1, 2, 3)]
    gone = seeder.grant(org.slug, "4", days=-1)

    active = list(client.grants(page_size=2))
    expired = list(client.grants("expired"))
    every = list(client.grants("all", page_size=1))

    assert [grant.id for grant in active] == [*reversed(made), made[0] - 1]
    assert all(isinstance(grant, Grant) for grant in active)
    newest = active[0]
    assert (newest.kind, newest.amount, newest.remaining, newest.priority) == ("grant", 3, 3, 10)
    assert newest.expires_at is not None and newest.expires_at.tzinfo is not None
    assert active[-1].expires_at is None and active[-1].amount == Decimal(1000)
    assert [(grant.id, grant.remaining) for grant in expired] == [(gone, Decimal(0))]
    assert len(every) == 5


def test_grants_refuse_an_unknown_status(client: CreditClient) -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        list(client.grants("spent"))


def test_refund_says_where_the_credits_went_and_transactions_filter_by_kind(
    client: CreditClient, seeder: Seeder, org: OrgKey
) -> None:
    seeder.grant(org.slug, "1", days=-1)  # expires at the next read
    deduction = client.deduct("generate_content", quantity=2)

    refund = client.refund(deduction.deduction_id)

    [part] = refund.returned_to
    assert (part.amount, part.expires_at) == (Decimal(2), None)
    assert [row.kind for row in client.transactions(kind="expire")] == ["expire"]
    assert [row.amount for row in client.transactions(kind="refund")] == [Decimal(2)]


def test_async_grants_and_balance(live_portal: LivePortal, seeder: Seeder, org: OrgKey) -> None:
    seeder.grant(org.slug, "6", days=2)

    async def scenario() -> tuple[list[Grant], Expiry | None]:
        async with AsyncCreditClient(live_portal.url, org.api_key, backoff=0.01) as api:
            grants = [grant async for grant in api.grants("all", page_size=1)]
            kinds = [row.kind async for row in api.transactions(kind="grant")]
            assert kinds == ["grant", "grant"]
            return grants, (await api.balance()).next_expiry

    grants, expiry = asyncio.run(scenario())

    assert [grant.amount for grant in grants] == [Decimal(6), Decimal(1000)]
    assert expiry is not None and expiry.amount == Decimal(6)
