"""Sign-up, login, account and membership forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, EqualTo, Length, ValidationError

from portal.auth.passwords import MIN_PASSWORD_LENGTH, password_problem

ROLE_CHOICES = [("member", "Member"), ("admin", "Admin"), ("owner", "Owner")]
PASSWORD_HINT = f"At least {MIN_PASSWORD_LENGTH} characters, and not a common password."


def new_password(form: FlaskForm, field: PasswordField) -> None:
    """The one password policy (``passwords.password_problem``), as a field error."""
    problem = password_problem(field.data or "")
    if problem is not None:
        raise ValidationError(f"Password {problem}.")


def _email(label: str = "Email") -> EmailField:
    return EmailField(label, validators=[DataRequired(), Email(), Length(max=255)])


def _repeat(of: str) -> PasswordField:
    return PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo(of, message="The two passwords differ.")],
    )


class SignupForm(FlaskForm):
    email = _email()
    password = PasswordField("Password", validators=[DataRequired(), new_password])
    organization = StringField(
        "Organization name", validators=[DataRequired(), Length(min=2, max=200)]
    )


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email()])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Remember me")


class ForgotPasswordForm(FlaskForm):
    email = _email()


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), new_password])
    confirm = _repeat("password")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired(), new_password])
    confirm = _repeat("new_password")


class ChangeEmailForm(FlaskForm):
    email = _email("New email")
    current_password = PasswordField("Current password", validators=[DataRequired()])


class InviteForm(FlaskForm):
    email = _email()
    role = SelectField("Role", choices=ROLE_CHOICES, default="member")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
