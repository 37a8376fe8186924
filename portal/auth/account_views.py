"""Account recovery and the signed-in account page: reset links, verification, changes."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user, login_required, login_user

from portal import limits
from portal.auth import account, service, tokens
from portal.auth.access import current_account
from portal.auth.forms import (
    PASSWORD_HINT,
    ChangeEmailForm,
    ChangePasswordForm,
    ForgotPasswordForm,
    ResetPasswordForm,
)
from portal.errors import InvalidRequest, PortalError

bp = Blueprint("account", __name__)


def _link_problem(exc: PortalError, kind: str):
    """A used, expired or unknown link, said plainly, with the way to a new one."""
    return render_template("auth/link_problem.html", message=exc.message, kind=kind), exc.status


@bp.route("/forgot-password", methods=["GET", "POST"])
@limits.per_address(
    limits.SIGNUP_LIMIT, message="Too many password-reset requests from your network."
)
def forgot_password():
    form = ForgotPasswordForm()
    if form.validate_on_submit():
        account.request_password_reset(form.email.data)
        # The same page whether or not the address has an account.
        return render_template("auth/forgot_password.html", form=form, sent_to=form.email.data)
    status = 422 if form.errors else 200
    return render_template("auth/forgot_password.html", form=form), status


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    try:
        account.check_reset_link(token)
    except tokens.LinkNotValid as exc:
        return _link_problem(exc, "reset")
    form = ResetPasswordForm()
    if form.validate_on_submit():
        try:
            account.reset_password(token, form.password.data)
        except tokens.LinkNotValid as exc:
            return _link_problem(exc, "reset")
        except InvalidRequest as exc:
            form.password.errors.append(exc.message.split(": ", 1)[-1])
        else:
            flash("Your password is changed. Log in with the new one.", "success")
            return redirect(url_for("auth.login"))
    status = 422 if form.errors else 200
    return render_template(
        "auth/reset_password.html", form=form, password_hint=PASSWORD_HINT
    ), status


@bp.get("/verify-email/<token>")
def verify_email(token: str):
    try:
        verified = account.verify_email(token)
    except tokens.LinkNotValid as exc:
        return _link_problem(exc, "verify")
    message = f"{verified.user.email} is verified."
    if verified.bonus_granted:
        message += " Your sign-up bonus credits are in your balance."
    flash(message, "success")
    return redirect(url_for("dashboard.index" if current_user.is_authenticated else "auth.login"))


@bp.post("/verify-email/resend")
@limits.per_address(limits.SIGNUP_LIMIT, message="Too many verification emails from your network.")
@login_required
def resend_verification():
    if service.resend_verification(current_account()):
        flash(f"We sent a new verification link to {current_user.email}.", "success")
    else:
        flash("Your email address is already verified.", "success")
    return redirect(url_for("dashboard.index"))


def _render_account(
    password_form: ChangePasswordForm | None = None,
    email_form: ChangeEmailForm | None = None,
    status: int = 200,
):
    return render_template(
        "settings/account.html",
        password_form=password_form or ChangePasswordForm(formdata=None),
        email_form=email_form or ChangeEmailForm(formdata=None),
        password_hint=PASSWORD_HINT,
    ), status


def _field_error(form, exc: PortalError, default: str) -> None:
    field = getattr(form, exc.extra.get("field") or default, None) or getattr(form, default)
    field.errors.append(exc.message.split(": ", 1)[-1])


@bp.get("/settings/account")
@login_required
def settings():
    return _render_account()


@bp.post("/settings/account/password")
@limits.per_address(limits.LOGIN_LIMIT, message="Too many password attempts from your network.")
@login_required
def change_password():
    form = ChangePasswordForm()
    if not form.validate():
        return _render_account(password_form=form, status=422)
    try:
        user = account.change_password(
            current_account(), form.current_password.data, form.new_password.data
        )
    except InvalidRequest as exc:
        _field_error(form, exc, "current_password")
        return _render_account(password_form=form, status=422)
    login_user(user)  # this session goes on with the new session version; all others end
    flash("Password changed. Every other session of your account was logged out.", "success")
    return redirect(url_for("account.settings"))


@bp.post("/settings/account/email")
@limits.per_address(limits.LOGIN_LIMIT, message="Too many password attempts from your network.")
@login_required
def change_email():
    form = ChangeEmailForm()
    if not form.validate():
        return _render_account(email_form=form, status=422)
    try:
        address = account.request_email_change(
            current_account(), form.email.data, form.current_password.data
        )
    except InvalidRequest as exc:
        _field_error(form, exc, "email")
        return _render_account(email_form=form, status=422)
    flash(
        f"We sent a confirmation link to {address}. Your email changes when you follow it.",
        "success",
    )
    return redirect(url_for("account.settings"))


@bp.get("/settings/account/email/<token>")
def confirm_email_change(token: str):
    try:
        verified = account.confirm_email_change(token)
    except PortalError as exc:
        return _link_problem(exc, "email_change")
    flash(f"Your email address is now {verified.user.email}.", "success")
    target = "account.settings" if current_user.is_authenticated else "auth.login"
    return redirect(url_for(target))
