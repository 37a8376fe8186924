"""Platform admin area: the feature pricing editor and organizations' balances.

Every view is for platform admins only. Every action is a plain link or form post that
redirects, so the area works without JavaScript; htmx requests (``HX-Request``) get the piece
of page they swap (a table row, the table) instead of a redirect.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user

from portal.admin import queries
from portal.admin.forms import FeatureEditForm, FeatureForm, GrantForm, attach_error
from portal.auth.access import platform_admin_required
from portal.credits import manual, pricing, service
from portal.credits.errors import InsufficientCredits
from portal.credits.models import FeaturePrice
from portal.credits.organizations import get_by_slug
from portal.errors import InvalidRequest, PortalError
from portal.money import format_credits

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _htmx() -> bool:
    """An htmx swap (not a history restore, which needs the whole page)."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


@bp.get("")
@bp.get("/")
@platform_admin_required
def index() -> ResponseReturnValue:
    return redirect(url_for("admin.feature_pricing"))


# --- feature pricing -------------------------------------------------------------------------


def _list_args() -> tuple[str, str]:
    query = request.args.get("q", "").strip()[:100]
    status = request.args.get("status", "current")
    return query, status if status in pricing.STATUSES else "current"


def _render_pricing(form: FeatureForm, status_code: int = 200) -> ResponseReturnValue:
    query, status = _list_args()
    context = {
        "prices": pricing.list_features(query, status),
        "q": query,
        "status": status,
        "counts": pricing.status_counts(),
    }
    if _htmx() and request.method == "GET":
        response = make_response(render_template("admin/_price_table.html", **context))
    else:
        page = render_template(
            "admin/feature_pricing.html", form=form, categories=pricing.categories(), **context
        )
        response = make_response(page, status_code)
    # One URL, two bodies (page or table): caches must key on the htmx header too.
    response.vary.add("HX-Request")
    return response


def _back_to(price: FeaturePrice) -> ResponseReturnValue:
    status = "archived" if price.archived_at else "current"
    return redirect(url_for("admin.feature_pricing", status=status, _anchor=f"price-{price.id}"))


def _row(price: FeaturePrice) -> ResponseReturnValue:
    return render_template("admin/_price_row.html", price=price)


@bp.get("/feature-pricing")
@platform_admin_required
def feature_pricing() -> ResponseReturnValue:
    return _render_pricing(FeatureForm(formdata=None))


@bp.post("/feature-pricing")
@platform_admin_required
def create_feature() -> ResponseReturnValue:
    form = FeatureForm()
    if form.validate():
        try:
            price = pricing.create_feature(form.draft(), user_id=current_user.id)
        except PortalError as exc:
            if not attach_error(form, exc):
                raise
        else:
            flash(
                f"Added {price.feature_key} at {format_credits(price.credits_per_unit)} "
                f"credits per {price.unit}.",
                "success",
            )
            return _back_to(price)
    return _render_pricing(form, 422)


def _render_edit(
    price: FeaturePrice, form: FeatureEditForm, status_code: int = 200
) -> ResponseReturnValue:
    template = "admin/_price_row_edit.html" if _htmx() else "admin/feature_edit.html"
    return render_template(template, price=price, form=form), status_code


@bp.get("/feature-pricing/<int:price_id>/edit")
@platform_admin_required
def edit_feature(price_id: int) -> ResponseReturnValue:
    """The inline edit row for htmx; without JavaScript, a page with the same form."""
    price = pricing.get_feature(price_id)
    if price.archived_at is not None:
        raise pricing.FeatureArchived(price.feature_key)
    return _render_edit(price, FeatureEditForm.for_price(price))


@bp.get("/feature-pricing/<int:price_id>/row")
@platform_admin_required
def price_row(price_id: int) -> ResponseReturnValue:
    """The read-only row, which "Cancel" swaps back in place of the edit row."""
    price = pricing.get_feature(price_id)
    return _row(price) if _htmx() else _back_to(price)


@bp.post("/feature-pricing/<int:price_id>")
@platform_admin_required
def update_feature(price_id: int) -> ResponseReturnValue:
    price = pricing.get_feature(price_id)
    form = FeatureEditForm()
    if form.validate():
        try:
            price = pricing.update_feature(price_id, form.values(), user_id=current_user.id)
        except PortalError as exc:
            if not attach_error(form, exc):
                raise
        else:
            if _htmx():
                return _row(price)
            flash(f"Saved {price.feature_key}.", "success")
            return _back_to(price)
    return _render_edit(price, form, 422)


def _set_active(price_id: int, active: bool) -> ResponseReturnValue:
    price = pricing.set_active(price_id, active, user_id=current_user.id)
    if _htmx():
        return _row(price)
    state = "active: callers are charged for it" if active else "inactive: deducts are refused"
    flash(f"{price.feature_key} is now {state}.", "success")
    return _back_to(price)


@bp.post("/feature-pricing/<int:price_id>/activate")
@platform_admin_required
def activate_feature(price_id: int) -> ResponseReturnValue:
    return _set_active(price_id, True)


@bp.post("/feature-pricing/<int:price_id>/deactivate")
@platform_admin_required
def deactivate_feature(price_id: int) -> ResponseReturnValue:
    return _set_active(price_id, False)


@bp.post("/feature-pricing/<int:price_id>/delete")
@platform_admin_required
def delete_feature(price_id: int) -> ResponseReturnValue:
    removal = pricing.delete_feature(price_id, user_id=current_user.id)
    key = removal.price.feature_key
    if removal.deleted:
        flash(f"Deleted {key}: it had never been used.", "success")
        return redirect(url_for("admin.feature_pricing"))
    flash(
        f"Archived {key} instead of deleting it: ledger rows use it, so it stays (inactive) "
        "to explain them.",
        "success",
    )
    return _back_to(removal.price)


@bp.post("/feature-pricing/<int:price_id>/restore")
@platform_admin_required
def restore_feature(price_id: int) -> ResponseReturnValue:
    price = pricing.restore_feature(price_id, user_id=current_user.id)
    flash(f"Restored {price.feature_key}; it is inactive until you activate it.", "success")
    return _back_to(price)


@bp.get("/feature-pricing/history", defaults={"feature_key": None})
@bp.get("/feature-pricing/history/<feature_key>")
@platform_admin_required
def pricing_history(feature_key: str | None) -> ResponseReturnValue:
    before = request.args.get("before", type=int)
    entries, next_id = pricing.history(feature_key, before_id=before)
    return render_template(
        "admin/pricing_history.html",
        entries=entries,
        feature_key=feature_key,
        newest_url=url_for("admin.pricing_history", feature_key=feature_key) if before else None,
        older_url=url_for("admin.pricing_history", feature_key=feature_key, before=next_id)
        if next_id
        else None,
    )


# --- organizations ---------------------------------------------------------------------------


@bp.get("/organizations")
@platform_admin_required
def organizations() -> ResponseReturnValue:
    query = request.args.get("q", "").strip()[:100]
    page = queries.list_organizations(query, request.args.get("page", 1, type=int))
    return render_template("admin/organizations.html", result=page, q=query)


def _render_organization(slug: str, form: GrantForm, status_code: int = 200) -> ResponseReturnValue:
    if not form.request_id.data:
        form.request_id.data = uuid.uuid4().hex
    detail = queries.organization_detail(slug)
    return render_template("admin/organization.html", detail=detail, form=form), status_code


@bp.get("/organizations/<slug>")
@platform_admin_required
def organization(slug: str) -> ResponseReturnValue:
    return _render_organization(slug, GrantForm(formdata=None))


@bp.post("/organizations/<slug>/grants")
@platform_admin_required
def grant_credits(slug: str) -> ResponseReturnValue:
    """Add credits by hand (a ``grant`` with its own expiry and priority), or take them (a
    negative amount: an ``adjustment``), through the manual-grant rules of the CLI and API."""
    target = get_by_slug(slug)
    form = GrantForm()
    if form.validate():
        try:
            wanted = form.manual_grant()
            manual.give(target.id, wanted, user_id=current_user.id, source_ref=form.source_ref)
        except InsufficientCredits as exc:
            form.amount.errors = [*form.amount.errors, exc.message]
        except service.DuplicateGrant:
            flash("That grant was already applied; it was not applied twice.", "warning")
            return redirect(url_for("admin.organization", slug=slug))
        except InvalidRequest as exc:
            if not attach_error(form, exc):
                raise
        else:
            flash(_granted_message(target.name, wanted), "success")
            return redirect(url_for("admin.organization", slug=slug))
    return _render_organization(slug, form, 422)


def _granted_message(name: str, wanted: manual.ManualGrant) -> str:
    amount = format_credits(abs(wanted.amount))
    if wanted.amount < 0:
        return f"Took {amount} credits from {name} (an adjustment, in burn order)."
    return f"Granted {amount} credits to {name}."
