"""The user dashboard: overview, usage chart, usage history (and CSV), transactions, credits
(the grants)."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_login import current_user

from portal.auth.access import member_required
from portal.billing import queries as billing
from portal.credits import labels, service
from portal.credits import queries as ledger
from portal.credits.models import LEDGER_KINDS
from portal.dashboard import charts, export, queries
from portal.dashboard.filters import UsageFilterForm
from portal.timeutil import utcnow

bp = Blueprint("dashboard", __name__)
PAGE_SIZE = 50


def _days() -> int:
    days = request.args.get("days", type=int) or 30
    return days if days in queries.CHART_RANGES else 30


@bp.get("/")
def home():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    return redirect(url_for("auth.login"))


@bp.get("/dashboard")
@member_required
def index():
    organization = g.membership.organization
    days = _days()
    overview = queries.overview(organization)
    entries, _ = ledger.ledger_entries(ledger.LedgerFilter(organization.id), kinds=None, limit=6)
    return render_template(
        "dashboard/index.html",
        overview=overview,
        days=days,
        chart=charts.stacked_daily_chart(queries.daily_usage(organization.id, days)),
        top=queries.top_features(organization.id, days),
        recent=entries,
        plan=billing.plan_summary(organization.id),
    )


@bp.get("/dashboard/chart")
@member_required
def chart():
    """The chart card alone, swapped in by the 7/30/90-day switch."""
    organization = g.membership.organization
    days = _days()
    queries.overview(organization)  # brings the rollup up to date
    return render_template(
        "dashboard/_usage_chart.html",
        days=days,
        chart=charts.stacked_daily_chart(queries.daily_usage(organization.id, days)),
        top=queries.top_features(organization.id, days),
    )


def _position() -> ledger.Position | None:
    """The ``before`` page position; a damaged one just starts from the newest rows."""
    token = request.args.get("before")
    try:
        return ledger.Position.decode(token) if token else None
    except ValueError:
        return None


def _filter_form(organization_id: int) -> UsageFilterForm:
    form = UsageFilterForm(request.args)
    prices = ledger.feature_choices()
    form.feature.choices = [("", "All features")] + [(key, key) for key, _ in prices]
    categories = sorted({category for _, category in prices})
    form.category.choices = [("", "All categories")] + [(c, c) for c in categories]
    form.department.choices = [("", "All departments")] + [
        (d.name, d.name) for d in ledger.list_departments(organization_id)
    ]
    return form


def _invalid_filters(form: UsageFilterForm):
    """The usage page with the filter errors and no rows (for the page and the CSV alike)."""
    return render_template(
        "dashboard/usage.html",
        form=form,
        entries=[],
        refunded={},
        departments={},
        next_url=None,
        newest_url=None,
    ), 422


@bp.get("/usage")
@member_required
def usage():
    organization_id = g.membership.organization_id
    form = _filter_form(organization_id)
    if not form.validate():
        return _invalid_filters(form)
    before = _position()
    entries, after = ledger.ledger_entries(
        form.to_filter(organization_id), kinds=("deduct",), limit=PAGE_SIZE, before=before
    )
    args = form.query_args()
    return render_template(
        "dashboard/usage.html",
        form=form,
        entries=entries,
        refunded=ledger.refunded_amounts([entry.id for entry in entries]),
        departments=ledger.department_names(organization_id),
        next_url=url_for("dashboard.usage", before=after.encode(), **args) if after else None,
        newest_url=url_for("dashboard.usage", **args) if before else None,
        csv_url=url_for("dashboard.usage_csv", **args),
    )


@bp.get("/usage.csv")
@member_required
def usage_csv():
    organization_id = g.membership.organization_id
    form = _filter_form(organization_id)
    if not form.validate():
        return _invalid_filters(form)
    filename = f"usage-{g.membership.organization.slug}-{utcnow():%Y%m%d-%H%M%S}.csv"
    return Response(
        stream_with_context(export.usage_csv(form.to_filter(organization_id))),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@bp.get("/transactions")
@member_required
def transactions():
    organization_id = g.membership.organization_id
    kind = request.args.get("kind", "")
    kind = kind if kind in LEDGER_KINDS else ""  # an unknown kind lists every row
    before = _position()
    entries, after = ledger.ledger_entries(
        ledger.LedgerFilter(organization_id),
        kinds=(kind,) if kind else None,
        limit=PAGE_SIZE,
        before=before,
    )
    args = {"kind": kind} if kind else {}
    return render_template(
        "dashboard/transactions.html",
        entries=entries,
        kind=kind,
        kinds=labels.kind_choices(),
        departments=ledger.department_names(organization_id),
        next_url=url_for("dashboard.transactions", before=after.encode(), **args)
        if after
        else None,
        newest_url=url_for("dashboard.transactions", **args) if before else None,
    )


@bp.get("/credits")
@member_required
def credits():
    """The organization's grants: what is left of each, where it came from, when it expires."""
    organization = g.membership.organization
    status = request.args.get("status", "active")
    status = status if status in ledger.GRANT_STATUSES else "active"
    before = _position()
    balance = service.get_balance(organization)  # sweeps expired grants before they are listed
    grants, after = ledger.grant_rows(organization.id, status, limit=PAGE_SIZE, before=before)
    return render_template(
        "dashboard/credits.html",
        balance=balance,
        grants=grants,
        status=status,
        next_url=url_for("dashboard.credits", status=status, before=after.encode())
        if after
        else None,
        newest_url=url_for("dashboard.credits", status=status) if before else None,
    )
