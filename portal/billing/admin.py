"""Platform admins edit the catalogue at /admin/billing: plans and packages, archive, restore.

Nothing is deleted: an archived item stays for the payments and invoices that name it. Edits
reach Stripe with ``flask stripe sync`` or, for an item whose price changed, at its next
checkout (a new Stripe price under the same lookup key).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from portal.auth.access import platform_admin_required
from portal.billing import catalogue
from portal.billing.catalogue import Kind
from portal.billing.forms import CatalogueItemForm
from portal.billing.models import CatalogueItem
from portal.errors import PortalError

bp = Blueprint("billing_admin", __name__, url_prefix="/admin/billing")
KINDS: dict[str, Kind] = {"plans": "plan", "packages": "package"}


def _kind(kinds: str) -> Kind:
    if kinds not in KINDS:
        abort(404)
    return KINDS[kinds]


@bp.get("")
@platform_admin_required
def index() -> ResponseReturnValue:
    return render_template(
        "billing/admin_index.html",
        plans=catalogue.all_items("plan"),
        packages=catalogue.all_items("package"),
    )


def _render_form(
    kinds: str, form: CatalogueItemForm, item: CatalogueItem | None = None, status: int = 200
) -> ResponseReturnValue:
    return render_template(
        "billing/admin_edit.html", kinds=kinds, kind=KINDS[kinds], form=form, item=item
    ), status


@bp.route("/<kinds>/new", methods=["GET", "POST"])
@platform_admin_required
def create(kinds: str) -> ResponseReturnValue:
    kind = _kind(kinds)
    form = CatalogueItemForm(kind, creating=True)
    if not form.validate_on_submit():
        return _render_form(kinds, form, status=422 if form.is_submitted() else 200)
    try:
        item = catalogue.save_item(kind, form.to_spec())
    except PortalError as exc:
        form.lookup_key.errors = [*form.lookup_key.errors, exc.message]
        return _render_form(kinds, form, status=exc.status)
    flash(f"{item.name} created.", "success")
    return redirect(url_for("billing_admin.index", _anchor=f"{kind}-{item.id}"))


@bp.route("/<kinds>/<int:item_id>", methods=["GET", "POST"])
@platform_admin_required
def edit(kinds: str, item_id: int) -> ResponseReturnValue:
    kind = _kind(kinds)
    item = catalogue.get_item(kind, item_id)
    form = CatalogueItemForm(kind)
    if not form.is_submitted():
        return _render_form(kinds, CatalogueItemForm.for_item(kind, item), item)
    if not form.validate():
        return _render_form(kinds, form, item, 422)
    item = catalogue.save_item(kind, form.to_spec(), item_id)
    flash(f"{item.name} saved.", "success")
    return redirect(url_for("billing_admin.index", _anchor=f"{kind}-{item.id}"))


@bp.post("/<kinds>/<int:item_id>/archive")
@platform_admin_required
def archive(kinds: str, item_id: int) -> ResponseReturnValue:
    item = catalogue.set_archived(_kind(kinds), item_id, True)
    flash(f"{item.name} archived: no longer for sale; what was sold keeps it.", "success")
    return redirect(url_for("billing_admin.index"))


@bp.post("/<kinds>/<int:item_id>/restore")
@platform_admin_required
def restore(kinds: str, item_id: int) -> ResponseReturnValue:
    item = catalogue.set_archived(_kind(kinds), item_id, False)
    flash(f"{item.name} is for sale again.", "success")
    return redirect(url_for("billing_admin.index"))
