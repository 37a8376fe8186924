"""People: users, their memberships in organizations, and invitations."""

from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.timeutil import utcnow

ROLES = ("owner", "admin", "member")


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    email_verified_at: Mapped[datetime | None]
    # Part of every session's login id: raising it (logout, password change or reset) makes
    # every earlier session cookie and remember-me cookie of this user stale at once.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")
    # The organization created at sign-up, whose bonus waits for the email to be verified.
    signup_organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    # Not a column: a random value per login, so each login's remember cookie differs.
    login_nonce = ""

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}:{self.login_nonce}"

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None


class Membership(db.Model):
    __tablename__ = "memberships"
    __table_args__ = (
        UniqueConstraint("user_id", "organization_id"),
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="membership_role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(back_populates="memberships")
    organization = relationship("Organization")

    @property
    def can_manage(self) -> bool:
        return self.role in ("owner", "admin")


class Invitation(db.Model):
    """A one-time link that lets someone join an organization with a role."""

    __tablename__ = "invitations"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="invitation_role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None]

    organization = relationship("Organization")


TOKEN_PURPOSES = ("password_reset", "email_verify", "email_change")


class AccountToken(db.Model):
    """A single-use link mailed to someone: reset a password, verify or change an email.

    Only the SHA-256 of the token is stored. ``used_at`` is set by a conditional
    ``UPDATE … WHERE used_at IS NULL``, so the database lets each link work once.
    """

    __tablename__ = "account_tokens"
    __table_args__ = (
        CheckConstraint(
            "purpose IN ('password_reset', 'email_verify', 'email_change')",
            name="account_token_purpose",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The address the link was mailed to (for an email change: the new address).
    email: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()
