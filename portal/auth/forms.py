"""Sign-up, login and membership forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Email, Length, Optional

from portal.auth.service import MIN_PASSWORD_LENGTH

ROLE_CHOICES = [("member", "Member"), ("admin", "Admin"), ("owner", "Owner")]


class SignupForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=255)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=200)]
    )
    organization = StringField(
        "Organization name", validators=[DataRequired(), Length(min=2, max=200)]
    )


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email()])
    password = PasswordField("Password", validators=[DataRequired()])
    remember = BooleanField("Remember me")


class InviteForm(FlaskForm):
    email = EmailField("Email (optional)", validators=[Optional(), Email(), Length(max=255)])
    role = SelectField("Role", choices=ROLE_CHOICES, default="member")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
