"""Read models for the admin organization pages: balances, grants, usage this month, members."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, or_, select

from portal.auth import service as people
from portal.auth.models import Membership
from portal.billing import queries as billing
from portal.credits import organizations, rollup, service
from portal.credits import queries as ledger
from portal.credits.models import CreditGrant, LedgerEntry, Organization, UsageRollup
from portal.credits.results import Balance
from portal.extensions import db
from portal.timeutil import month_start, utcnow

ORGANIZATIONS_PAGE = 50
RECENT_LEDGER_ROWS = 20
RECENT_GRANTS = 30


@dataclass(frozen=True)
class OrganizationRow:
    organization: Organization
    used_this_month: int
    members: int
    plan: str | None = None  # the live subscription's plan, if any


@dataclass(frozen=True)
class OrganizationPage:
    rows: list[OrganizationRow]
    page: int
    has_next: bool


@dataclass(frozen=True)
class OrganizationDetail:
    organization: Organization
    used_this_month: int
    used_last_month: int
    entries: list[LedgerEntry]
    departments: dict[int, str]
    members: list[Membership]
    balance: Balance
    grants: list[CreditGrant]
    more_grants: bool
    plan: str | None = None


def _this_month() -> tuple[date, date]:
    this_month = month_start(utcnow()).date()
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    return this_month, last_month


def _usage_since(
    organization_ids: list[int], start: date, end: date | None = None
) -> dict[int, int]:
    if not organization_ids:
        return {}
    stmt = select(UsageRollup.organization_id, func.sum(UsageRollup.credits)).where(
        UsageRollup.organization_id.in_(organization_ids), UsageRollup.day >= start
    )
    if end is not None:
        stmt = stmt.where(UsageRollup.day < end)
    rows = db.session.execute(stmt.group_by(UsageRollup.organization_id)).all()
    return {organization_id: int(total or 0) for organization_id, total in rows}


def list_organizations(query: str = "", page: int = 1) -> OrganizationPage:
    """One page of organizations by name, with usage this month and member counts."""
    page = max(page, 1)
    stmt = select(Organization.id)
    query = query.strip()
    if query:
        stmt = stmt.where(
            or_(
                Organization.name.icontains(query, autoescape=True),
                Organization.slug.icontains(query, autoescape=True),
            )
        )
    ids = list(
        db.session.scalars(
            stmt.order_by(func.lower(Organization.name), Organization.id)
            .offset((page - 1) * ORGANIZATIONS_PAGE)
            .limit(ORGANIZATIONS_PAGE + 1)
        )
    )
    has_next = len(ids) > ORGANIZATIONS_PAGE
    ids = ids[:ORGANIZATIONS_PAGE]
    # Fold new ledger rows into the rollups first; each refresh commits, so load after it.
    for organization_id in ids:
        rollup.refresh(organization_id)
    by_id = {
        organization.id: organization
        for organization in db.session.scalars(select(Organization).where(Organization.id.in_(ids)))
    }
    used = _usage_since(ids, _this_month()[0])
    members = dict(
        db.session.execute(
            select(Membership.organization_id, func.count())
            .where(Membership.organization_id.in_(ids))
            .group_by(Membership.organization_id)
        ).all()
    )
    plans = billing.plan_names(ids)
    rows = [
        OrganizationRow(by_id[i], used.get(i, 0), members.get(i, 0), plans.get(i))
        for i in ids
        if i in by_id
    ]
    return OrganizationPage(rows, page, has_next)


def organization_detail(slug: str) -> OrganizationDetail:
    """Everything the admin page of one organization shows, and nothing of any other."""
    found = organizations.get_by_slug(slug)
    organization_id = found.id
    rollup.refresh(organization_id)
    balance = service.get_balance(found)  # sweeps expired grants and lapsed holds first
    organization = db.session.get(Organization, organization_id, populate_existing=True)
    grants, more = ledger.grant_rows(organization_id, "all", limit=RECENT_GRANTS)
    this_month, last_month = _this_month()
    entries, _ = ledger.ledger_entries(
        ledger.LedgerFilter(organization_id), kinds=None, limit=RECENT_LEDGER_ROWS
    )
    return OrganizationDetail(
        organization=organization,
        used_this_month=_usage_since([organization_id], this_month).get(organization_id, 0),
        used_last_month=_usage_since([organization_id], last_month, this_month).get(
            organization_id, 0
        ),
        entries=entries,
        departments=ledger.department_names(organization_id),
        members=people.members_of(organization_id),
        balance=balance,
        grants=grants,
        more_grants=more is not None,
        plan=billing.plan_names([organization_id]).get(organization_id),
    )
