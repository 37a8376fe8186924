"""Sign up, log in and out, accept invitations, switch organization."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from portal import limits
from portal.auth import invitations, service
from portal.auth.access import SESSION_ORG_KEY, current_account
from portal.auth.forms import PASSWORD_HINT, LoginForm, SignupForm
from portal.auth.models import User
from portal.errors import Forbidden, NotFound, PortalError, portal_error_response

bp = Blueprint("auth", __name__)


def _safe_next(default: str) -> str:
    """Only follow ``next`` to a path on this site, never to another host."""
    target = request.args.get("next", "")
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and not parts.netloc:
        return target
    return default


@bp.errorhandler(limits.RateLimited)
def too_many_attempts(exc: limits.RateLimited):
    """A refused login re-renders the form with the reason; other pages get the styled 429."""
    if request.endpoint != "auth.login":
        return portal_error_response(exc)
    form = LoginForm()
    form.password.errors = [exc.message]
    headers = {"Retry-After": str(exc.retry_after)}
    return render_template("auth/login.html", form=form), exc.status, headers


def _home(user: User) -> str:
    """Where a signed-in user belongs: platform admins without an organization go to admin."""
    if user.is_admin and not user.memberships:
        return url_for("admin.feature_pricing")
    return url_for("dashboard.index")


@bp.route("/signup", methods=["GET", "POST"])
@limits.per_address(limits.SIGNUP_LIMIT, message="Too many sign-ups from your network.")
def signup():
    if current_user.is_authenticated:
        return redirect(_home(current_user))
    form = SignupForm()
    if form.validate_on_submit():
        try:
            result = service.signup(form.email.data, form.password.data, form.organization.data)
        except service.EmailTaken as exc:
            form.email.errors.append(exc.message)
        except PortalError as exc:
            field = exc.extra.get("field")
            target = getattr(form, field, form.organization) if field else form.organization
            target.errors.append(exc.message.split(": ", 1)[-1])
        else:
            login_user(result.user)
            session[SESSION_ORG_KEY] = result.organization.id
            welcome = f"Welcome! {result.organization.name} is ready."
            if not result.bonus_granted:
                welcome += f" We sent a verification link to {result.user.email}."
            flash(welcome, "success")
            return redirect(url_for("dashboard.index"))
    status = 422 if form.errors else 200
    return render_template("auth/signup.html", form=form, password_hint=PASSWORD_HINT), status


@bp.route("/login", methods=["GET", "POST"])
@limits.per_account(limits.LOGIN_LIMIT, message="Too many login attempts for this account.")
@limits.per_address(limits.LOGIN_LIMIT, message="Too many login attempts from your network.")
def login():
    if current_user.is_authenticated:
        return redirect(_safe_next(_home(current_user)))
    form = LoginForm()
    if form.validate_on_submit():
        user = service.authenticate(form.email.data, form.password.data)
        if user is not None:
            login_user(user, remember=form.remember.data)
            session.pop(SESSION_ORG_KEY, None)
            return redirect(_safe_next(_home(user)))
        form.password.errors.append("Email or password is not right.")
    status = 422 if form.errors else 200
    return render_template("auth/login.html", form=form), status


@bp.post("/logout")
def logout():
    if current_user.is_authenticated:
        service.end_all_sessions(current_account())  # every copy of this session, everywhere
    logout_user()
    session.clear()
    flash("You are logged out.", "success")
    return redirect(url_for("auth.login"))


@bp.post("/orgs/switch")
@login_required
def switch_organization():
    organization_id = request.form.get("organization_id", type=int)
    if not any(m.organization_id == organization_id for m in current_user.memberships):
        raise Forbidden("You are not a member of that organization.")
    session[SESSION_ORG_KEY] = organization_id
    return redirect(_safe_next(url_for("dashboard.index")))


@bp.route("/invite/<token>", methods=["GET", "POST"])
@limits.per_address(limits.SIGNUP_LIMIT, message="Too many invitation accepts from your network.")
def accept_invitation(token: str):
    try:
        invitation = invitations.invitation_for(token)
    except NotFound as exc:
        return render_template("auth/invitation.html", error=exc.message), 404
    if not current_user.is_authenticated:
        return render_template("auth/invitation.html", invitation=invitation, token=token)
    if request.method == "POST":
        try:
            membership = invitations.accept(token, current_account())
        except PortalError as exc:
            return render_template(
                "auth/invitation.html", invitation=invitation, refusal=exc.message
            ), exc.status
        session[SESSION_ORG_KEY] = membership.organization_id
        flash(f"You joined {invitation.organization.name} as {membership.role}.", "success")
        return redirect(url_for("dashboard.index"))
    refusal = invitations.refusal(invitation, current_account())
    return render_template(
        "auth/invitation.html", invitation=invitation, token=token, refusal=refusal
    ), (403 if refusal else 200)
