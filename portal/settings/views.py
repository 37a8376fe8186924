"""Organization settings: API keys, departments, members and webhooks (owners and admins manage)."""

from __future__ import annotations

from flask import Blueprint, flash, g, make_response, redirect, render_template, session, url_for
from flask_login import current_user

from portal.auth import invitations
from portal.auth import service as people
from portal.auth.access import current_account, manager_required, member_required
from portal.auth.forms import InviteForm, RoleForm
from portal.credits import apikeys, queries, service
from portal.credits.errors import DepartmentExists, DepartmentNotFound
from portal.errors import PortalError
from portal.settings.forms import (
    ApiKeyForm,
    DepartmentForm,
    DepartmentLimitForm,
    WebhookEndpointForm,
)
from portal.timeutil import month_key, utcnow
from portal.webhooks import delivery as webhook_delivery
from portal.webhooks import service as webhooks

bp = Blueprint("settings", __name__, url_prefix="/settings")


@bp.get("")
@member_required
def index():
    return redirect(
        url_for("settings.api_keys" if g.membership.can_manage else "settings.departments")
    )


# The new secret waits in the session for the one GET that follows the POST (post/redirect/get:
# a reload creates nothing and no longer shows it); never in a URL, where logs would keep it.
NEW_SECRET_KEY = "new_api_key"


def _stash_secret(key: str, secret: str) -> None:
    """Keep a new secret for the next page of this organization only: it is shown once."""
    session[key] = {"org": g.membership.organization_id, "secret": secret}


def _pop_secret(key: str) -> str | None:
    stashed = session.pop(key, None) or {}
    return stashed.get("secret") if stashed.get("org") == g.membership.organization_id else None


def _secret_page(template: str, status: int, **context):
    response = make_response(render_template(template, **context), status)
    response.headers["Cache-Control"] = "no-store"  # Back must not bring the secret back
    return response


def _render_api_keys(form: ApiKeyForm, status: int = 200):
    return _secret_page(
        "settings/api_keys.html",
        status,
        form=form,
        keys=apikeys.list_api_keys(g.membership.organization_id),
        new_secret=_pop_secret(NEW_SECRET_KEY),
    )


@bp.get("/api-keys")
@manager_required
def api_keys():
    return _render_api_keys(ApiKeyForm())


@bp.post("/api-keys")
@manager_required
def create_api_key():
    form = ApiKeyForm()
    if not form.validate():
        return _render_api_keys(form, status=422)
    new = apikeys.create_api_key(g.membership.organization_id, form.name.data, current_user.id)
    _stash_secret(NEW_SECRET_KEY, new.secret)
    flash(f"API key “{new.key.name}” created. Copy it now: it is shown only once.", "success")
    return redirect(url_for("settings.api_keys"), 303)


@bp.post("/api-keys/<int:key_id>/revoke")
@manager_required
def revoke_api_key(key_id: int):
    key = apikeys.revoke_api_key(g.membership.organization_id, key_id)
    flash(f"API key “{key.name}” ({key.prefix}…) revoked.", "success")
    return redirect(url_for("settings.api_keys"))


def _render_departments(form: DepartmentForm, status: int = 200):
    departments = queries.list_departments(g.membership.organization_id)
    return render_template(
        "settings/departments.html",
        form=form,
        departments=departments,
        limit_form=DepartmentLimitForm(formdata=None),
        month=month_key(utcnow()),
    ), status


@bp.get("/departments")
@member_required
def departments():
    return _render_departments(DepartmentForm())


@bp.post("/departments")
@manager_required
def create_department():
    form = DepartmentForm()
    if not form.validate():
        return _render_departments(form, 422)
    try:
        service.create_department(
            g.membership.organization_id, form.name.data, form.monthly_limit.micros
        )
    except DepartmentExists as exc:
        form.name.errors.append(exc.message)
        return _render_departments(form, 422)
    flash(f"Department “{form.name.data}” created.", "success")
    return redirect(url_for("settings.departments"))


@bp.post("/departments/<int:department_id>/limit")
@manager_required
def set_department_limit(department_id: int):
    organization_id = g.membership.organization_id
    department = next(
        (d for d in queries.list_departments(organization_id) if d.id == department_id), None
    )
    if department is None:
        raise DepartmentNotFound(str(department_id))
    form = DepartmentLimitForm()
    if not form.validate():
        flash(f"{department.name}: {'; '.join(form.monthly_limit.errors)}", "error")
        return _render_departments(DepartmentForm(formdata=None), 422)
    service.set_department_limit(organization_id, department.name, form.monthly_limit.micros)
    state = "cleared" if form.monthly_limit.micros is None else "updated"
    flash(f"Monthly limit of “{department.name}” {state}.", "success")
    return redirect(url_for("settings.departments"))


# The new invitation's link waits in the session for the one GET after the POST
# (post/redirect/get: a reload sends no second invitation), never in a URL.
NEW_INVITE_KEY = "new_invitation_url"


def _render_members(form: InviteForm, status: int = 200):
    organization_id = g.membership.organization_id
    stashed = session.pop(NEW_INVITE_KEY, None) or {}
    invite_url = stashed.get("url") if stashed.get("org") == organization_id else None
    response = make_response(
        render_template(
            "settings/members.html",
            form=form,
            members=people.members_of(organization_id),
            invitations=invitations.pending_invitations(organization_id),
            invite_url=invite_url,
            role_form=RoleForm(formdata=None),
        ),
        status,
    )
    if invite_url:
        response.headers["Cache-Control"] = "no-store"  # Back must not bring the link back
    return response


@bp.get("/members")
@member_required
def members():
    return _render_members(InviteForm())


@bp.post("/members")
@manager_required
def invite_member():
    form = InviteForm()
    if not form.validate():
        return _render_members(form, status=422)
    if form.role.data == "owner" and g.membership.role != "owner":
        form.role.errors.append("Only an owner can invite another owner.")
        return _render_members(form, status=422)
    try:
        new = invitations.invite(
            g.membership.organization_id, form.role.data, form.email.data, current_account()
        )
    except PortalError as exc:
        form.email.errors.append(exc.message.split(": ", 1)[-1])
        return _render_members(form, status=422)
    session[NEW_INVITE_KEY] = {"org": g.membership.organization_id, "url": new.url}
    flash(f"Invitation sent to {new.invitation.email}.", "success")
    return redirect(url_for("settings.members"), 303)


@bp.post("/members/invitations/<int:invitation_id>/resend")
@manager_required
def resend_invitation(invitation_id: int):
    new = invitations.resend(g.membership.organization_id, invitation_id, current_account())
    flash(
        f"Invitation sent again to {new.invitation.email}; the earlier link no longer works.",
        "success",
    )
    return redirect(url_for("settings.members"))


@bp.post("/members/invitations/<int:invitation_id>/revoke")
@manager_required
def revoke_invitation(invitation_id: int):
    invitation = invitations.revoke(g.membership.organization_id, invitation_id)
    flash(f"Invitation of {invitation.email} withdrawn; its link no longer works.", "success")
    return redirect(url_for("settings.members"))


@bp.post("/members/<int:membership_id>/role")
@manager_required
def change_role(membership_id: int):
    form = RoleForm()
    try:
        if not form.validate():
            raise PortalError("Choose a valid role.")
        member = people.change_role(
            g.membership.organization_id, membership_id, form.role.data, g.membership
        )
        flash(f"{member.user.email} is now {member.role}.", "success")
    except PortalError as exc:
        flash(exc.message, "error")
    return redirect(url_for("settings.members"))


@bp.post("/members/<int:membership_id>/remove")
@manager_required
def remove_member(membership_id: int):
    try:
        people.remove_member(g.membership.organization_id, membership_id, g.membership)
        flash("Member removed.", "success")
    except PortalError as exc:
        flash(exc.message, "error")
    return redirect(url_for("settings.members"))


# The new endpoint's signing secret, like an API key's: shown on the one GET after the POST.
NEW_WEBHOOK_SECRET_KEY = "new_webhook_secret"


def _render_webhooks(form: WebhookEndpointForm, status: int = 200):
    organization_id = g.membership.organization_id
    return _secret_page(
        "settings/webhooks.html",
        status,
        form=form,
        endpoints=webhooks.list_endpoints(organization_id),
        log=webhooks.delivery_log(organization_id),
        new_secret=_pop_secret(NEW_WEBHOOK_SECRET_KEY),
    )


@bp.get("/webhooks")
@manager_required
def webhooks_page():
    return _render_webhooks(WebhookEndpointForm())


@bp.post("/webhooks")
@manager_required
def create_webhook():
    form = WebhookEndpointForm()
    if not form.validate():
        return _render_webhooks(form, 422)
    try:
        new = webhooks.create_endpoint(
            g.membership.organization_id,
            form.url.data.strip(),
            form.events.data or None,
            (form.description.data or "").strip() or None,
            current_user.id,
        )
    except PortalError as exc:
        form.url.errors.append(exc.message.split(": ", 1)[-1])
        return _render_webhooks(form, 422)
    _stash_secret(NEW_WEBHOOK_SECRET_KEY, new.secret)
    flash("Endpoint added. Copy its signing secret now: it is shown only once.", "success")
    return redirect(url_for("settings.webhooks_page"), 303)


@bp.post("/webhooks/<endpoint_id>/delete")
@manager_required
def delete_webhook(endpoint_id: str):
    endpoint = webhooks.delete_endpoint(g.membership.organization_id, endpoint_id)
    flash(f"Endpoint {endpoint.url} deleted; nothing more is sent to it.", "success")
    return redirect(url_for("settings.webhooks_page"), 303)


@bp.post("/webhooks/<endpoint_id>/test")
@manager_required
def test_webhook(endpoint_id: str):
    result = webhook_delivery.send_test(g.membership.organization_id, endpoint_id)
    _flash_attempt("Test event", result["status_code"], result["error"])
    return redirect(url_for("settings.webhooks_page"), 303)


@bp.post("/webhooks/deliveries/<int:delivery_id>/resend")
@manager_required
def resend_webhook(delivery_id: int):
    attempt = webhook_delivery.send_now(g.membership.organization_id, delivery_id)
    _flash_attempt("Resent", attempt.status_code, attempt.error)
    return redirect(url_for("settings.webhooks_page"), 303)


def _flash_attempt(what: str, status_code: int | None, error: str | None) -> None:
    if status_code is not None and 200 <= status_code < 300:
        flash(f"{what}: delivered (HTTP {status_code}).", "success")
    else:
        flash(f"{what}: failed ({error or status_code}); it will be retried.", "error")
