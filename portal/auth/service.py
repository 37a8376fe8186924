"""People and access: sign-up, login, invitations and roles. Commits once per operation."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.auth.models import ROLES, Invitation, Membership, User
from portal.credits import organizations
from portal.credits.models import Organization
from portal.errors import Conflict, Forbidden, InvalidRequest, NotFound
from portal.extensions import db
from portal.money import parse_micros
from portal.timeutil import utcnow

# Argon2id with the library's defaults (RFC 9106 low-memory profile). The test suite asks
# for a cheap profile (PASSWORD_HASH_FAST) so hundreds of logins do not dominate its runtime.
_hasher = PasswordHasher()
_fast_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def _password_hasher() -> PasswordHasher:
    return _fast_hasher if current_app.config.get("PASSWORD_HASH_FAST") else _hasher


INVITATION_LIFETIME = timedelta(days=7)
MIN_PASSWORD_LENGTH = 8


class EmailTaken(Conflict):
    code = "email_taken"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def hash_password(password: str) -> str:
    return _password_hasher().hash(password)


def find_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


def authenticate(email: str, password: str) -> User | None:
    """The user whose password matches, else None; unknown emails cost the same time."""
    user = find_user(email)
    if user is None or not user.password_hash:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _password_hasher().check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def create_user(email: str, password: str | None, *, is_admin: bool = False) -> User:
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidRequest("password", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    user = User(
        email=normalize_email(email),
        password_hash=hash_password(password) if password else None,
        is_admin=is_admin,
    )
    db.session.add(user)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise EmailTaken("An account with this email already exists.") from None
    return user


def add_membership(user: User, organization_id: int, role: str) -> Membership:
    if role not in ROLES:
        raise InvalidRequest("role", f"must be one of {', '.join(ROLES)}")
    membership = db.session.scalar(
        select(Membership).where(
            Membership.user_id == user.id, Membership.organization_id == organization_id
        )
    )
    if membership is None:
        membership = Membership(user_id=user.id, organization_id=organization_id, role=role)
        db.session.add(membership)
    else:
        membership.role = role
    db.session.commit()
    return membership


@dataclass(frozen=True)
class Signup:
    user: User
    organization: Organization


def signup(email: str, password: str, organization_name: str) -> Signup:
    """A new user, their organization (slug from its name), owner role and the signup bonus."""
    if find_user(email) is not None:
        raise EmailTaken("An account with this email already exists.")
    user = create_user(email, password)
    bonus = parse_micros(str(current_app.config["PORTAL_SIGNUP_CREDITS"]), allow_zero=True)
    for _ in range(3):  # a concurrent sign-up may take the same slug first
        try:
            organization = organizations.create_organization(
                organizations.unique_slug(organization_name),
                organization_name.strip(),
                bonus,
                kind="signup_bonus",
            )
            break
        except Conflict:
            continue
    else:
        raise Conflict("Could not allocate an organization address; please retry.")
    add_membership(user, organization.id, "owner")
    return Signup(user, organization)


def memberships_of(user: User) -> list[Membership]:
    return list(
        db.session.scalars(
            select(Membership)
            .join(Organization, Organization.id == Membership.organization_id)
            .where(Membership.user_id == user.id)
            .order_by(Organization.name)
        )
    )


def members_of(organization_id: int) -> list[Membership]:
    return list(
        db.session.scalars(
            select(Membership)
            .join(User, User.id == Membership.user_id)
            .where(Membership.organization_id == organization_id)
            .order_by(User.email)
        )
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str


def invite(organization_id: int, role: str, email: str | None, by_user: User) -> NewInvitation:
    if role not in ROLES:
        raise InvalidRequest("role", f"must be one of {', '.join(ROLES)}")
    token = secrets.token_urlsafe(24)
    invitation = Invitation(
        organization_id=organization_id,
        email=normalize_email(email) if email else None,
        role=role,
        token_hash=_token_hash(token),
        created_by_user_id=by_user.id,
        expires_at=utcnow() + INVITATION_LIFETIME,
    )
    db.session.add(invitation)
    db.session.commit()
    return NewInvitation(invitation, token)


def pending_invitations(organization_id: int) -> list[Invitation]:
    return list(
        db.session.scalars(
            select(Invitation)
            .where(
                Invitation.organization_id == organization_id,
                Invitation.accepted_at.is_(None),
                Invitation.expires_at > utcnow(),
            )
            .order_by(Invitation.created_at.desc())
        )
    )


def invitation_for(token: str) -> Invitation:
    invitation = db.session.scalar(
        select(Invitation).where(Invitation.token_hash == _token_hash(token))
    )
    if invitation is None or invitation.accepted_at is not None:
        raise NotFound("This invitation link is not valid or was already used.")
    if invitation.expires_at <= utcnow():
        raise NotFound("This invitation link has expired; ask for a new one.")
    return invitation


def accept_invitation(token: str, user: User) -> Membership:
    """One-time: the link is spent by the first user who accepts it."""
    invitation = invitation_for(token)
    if invitation.email and invitation.email != user.email:
        raise Forbidden(f"This invitation is for {invitation.email}.")
    spent = db.session.execute(
        Invitation.__table__.update()
        .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None))
        .values(accepted_at=utcnow(), accepted_by_user_id=user.id)
    )
    if spent.rowcount != 1:
        db.session.rollback()
        raise NotFound("This invitation link was already used.")
    existing = db.session.scalar(
        select(Membership).where(
            Membership.user_id == user.id,
            Membership.organization_id == invitation.organization_id,
        )
    )
    if existing is None:
        existing = Membership(
            user_id=user.id, organization_id=invitation.organization_id, role=invitation.role
        )
        db.session.add(existing)
    db.session.commit()
    return existing


def _member(organization_id: int, membership_id: int) -> Membership:
    membership = db.session.scalar(
        select(Membership).where(
            Membership.id == membership_id, Membership.organization_id == organization_id
        )
    )
    if membership is None:
        raise NotFound("No such member in this organization.")
    return membership


def _owner_count(organization_id: int) -> int:
    return db.session.scalar(
        select(func.count()).where(
            Membership.organization_id == organization_id, Membership.role == "owner"
        )
    )


def change_role(organization_id: int, membership_id: int, role: str, by: Membership) -> Membership:
    if role not in ROLES:
        raise InvalidRequest("role", f"must be one of {', '.join(ROLES)}")
    membership = _member(organization_id, membership_id)
    if "owner" in (role, membership.role) and by.role != "owner":
        raise Forbidden("Only an owner can grant or take away the owner role.")
    if membership.role == "owner" and role != "owner" and _owner_count(organization_id) == 1:
        raise Conflict("An organization keeps at least one owner.")
    membership.role = role
    db.session.commit()
    return membership


def remove_member(organization_id: int, membership_id: int, by: Membership) -> None:
    membership = _member(organization_id, membership_id)
    if membership.role == "owner":
        if by.role != "owner":
            raise Forbidden("Only an owner can remove an owner.")
        if _owner_count(organization_id) == 1:
            raise Conflict("An organization keeps at least one owner.")
    db.session.delete(membership)
    db.session.commit()
