"""The outbox: events commit with their change or not at all, once per dedupe key."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.credits import service
from portal.credits.service import GrantTerms
from portal.extensions import db
from portal.outbox import emit
from portal.outbox.jobs import expiry_warnings
from portal.outbox.models import OutboxEvent
from portal.timeutil import utcnow
from tests.conftest import credits


def events(event_type: str | None = None) -> list[OutboxEvent]:
    query = select(OutboxEvent).order_by(OutboxEvent.id)
    if event_type:
        query = query.where(OutboxEvent.type == event_type)
    found = list(db.session.scalars(query))
    db.session.rollback()
    return found


def test_emit_writes_a_standard_webhooks_payload_in_the_callers_commit(app, make_org):
    org = make_org(0)
    with service.transaction():
        event = emit("test.thing", org.id, {"amount": 12, "when": utcnow()})
        assert event is not None
    [row] = events("test.thing")
    assert re.fullmatch(r"msg_[0-9a-f]{32}", row.event_id)
    assert row.payload["type"] == "test.thing"
    assert row.payload["timestamp"].endswith("Z")
    assert row.payload["data"]["organization"] == org.slug
    assert row.payload["data"]["amount"] == 12
    assert row.dispatched_at is None


def test_emit_in_a_transaction_that_rolls_back_writes_nothing(app, make_org):
    org = make_org(0)
    with pytest.raises(RuntimeError), service.transaction():
        emit("test.thing", org.id, {})
        raise RuntimeError("the change failed")
    assert events("test.thing") == []


def test_emit_with_the_same_dedupe_key_twice_writes_one_row(app, make_org):
    org = make_org(0)
    with service.transaction():
        first = emit("test.thing", org.id, {}, dedupe_key="once")
        second = emit("test.thing", org.id, {}, dedupe_key="once")
    with service.transaction():  # and in a later transaction, which stays usable
        third = emit("test.thing", org.id, {}, dedupe_key="once")
        emit("test.other", org.id, {})
    assert first is not None and second is None and third is None
    assert len(events("test.thing")) == 1
    assert len(events("test.other")) == 1


def test_a_grant_writes_credits_granted_in_its_commit(app, make_org):
    org = make_org(0)
    expires_at = (utcnow() + timedelta(days=10)).replace(microsecond=0)
    granted = service.grant(
        org.id,
        credits("12.5"),
        "grant",
        description="goodwill",
        terms=GrantTerms(expires_at=expires_at),
    )
    [event] = events("credits.granted")
    assert event.organization_id == org.id
    assert event.payload["data"] == {
        "grant_id": granted.grant_id,
        "kind": "grant",
        "amount": 12.5,
        "expires_at": expires_at.isoformat(timespec="microseconds") + "Z",
        "description": "goodwill",
        "organization": org.slug,
    }


def test_a_grant_that_fails_writes_no_event(app, make_org):
    org = make_org(0)
    service.grant(org.id, credits(5), "purchase", description="p", source_ref="checkout:cs_1")
    with pytest.raises(service.DuplicateGrant):
        service.grant(org.id, credits(5), "purchase", description="p", source_ref="checkout:cs_1")
    with pytest.raises(RuntimeError), service.transaction():
        service.grant(org.id, credits(7), "grant", description="rolled back")
        raise RuntimeError("the caller failed after the grant")
    assert [e.payload["data"]["description"] for e in events("credits.granted")] == ["p"]


def test_the_expiry_sweep_writes_credits_expired_per_organization(app, make_org, clock):
    org = make_org(0)
    soon = clock.now + timedelta(days=1)
    first = service.grant(org.id, credits(3), "grant", description="a", terms=GrantTerms(soon))
    second = service.grant(org.id, credits(4), "grant", description="b", terms=GrantTerms(soon))
    clock.advance(days=2)
    assert service.expire_due(clock.now) == credits(7)
    [event] = events("credits.expired")
    data = event.payload["data"]
    assert data["amount"] == 7
    assert data["grants"] == [
        {"grant_id": first.grant_id, "amount": 3},
        {"grant_id": second.grant_id, "amount": 4},
    ]
    assert service.expire_due(clock.now) == 0  # nothing more expired: no second event
    assert len(events("credits.expired")) == 1


def test_expiry_warnings_once_per_grant_within_seven_days(app, make_org, clock):
    org = make_org(0)
    service.grant(
        org.id,
        credits(1),
        "grant",
        description="far",
        terms=GrantTerms(clock.now + timedelta(days=30)),
    )
    near = service.grant(
        org.id,
        credits(2),
        "grant",
        description="near",
        terms=GrantTerms(clock.now + timedelta(days=6)),
    )
    service.grant(org.id, credits(5), "grant", description="never")
    assert expiry_warnings(clock.now) == "warned of 1 expiring grant"
    assert expiry_warnings(clock.now) == "warned of 0 expiring grants"
    [event] = events("credits.expiring")
    assert event.dedupe_key == f"credits.expiring:{near.grant_id}"
    assert event.payload["data"]["amount"] == 2
    clock.advance(days=24)  # now the far one is within a week too
    assert expiry_warnings(clock.now) == "warned of 1 expiring grant"
    assert len(events("credits.expiring")) == 2


def test_closing_a_plan_period_writes_credits_expired_for_its_unused_credits(app, make_org, clock):
    org = make_org(0)
    start = clock.now
    end = start + timedelta(days=30)
    plan = service.grant(
        org.id,
        credits(50),
        "subscription",
        description="Starter plan",
        terms=GrantTerms(
            expires_at=end,
            subscription_ref="sub_1",
            period_start=start,
            period_end=end,
            rollover="none",
        ),
    )
    clock.advance(days=30)
    with service.transaction():
        assert service.close_plan_period(org.id, "sub_1", end, end + timedelta(days=30)) == (
            credits(50)
        )
    [event] = events("credits.expired")
    assert event.payload["data"]["grants"] == [{"grant_id": plan.grant_id, "amount": 50}]
