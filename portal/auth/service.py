"""People and access: sign-up, login sessions, memberships and roles. Commits once per step.

A login id is ``"<user id>:<session version>:<nonce>"`` (``User.get_id``): the loader refuses
an id whose version is not the user's current one, so raising the version (logout, password
change, reset) ends every earlier session and remember-me cookie of that user at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal import mail
from portal.auth import tokens
from portal.auth.models import ROLES, Membership, User
from portal.auth.passwords import check_new_password, hash_password, needs_rehash, verify_password
from portal.credits import organizations
from portal.credits import service as credits
from portal.credits.models import LedgerEntry, Organization
from portal.errors import Conflict, Forbidden, InvalidRequest, NotFound
from portal.extensions import db
from portal.money import parse_micros
from portal.timeutil import utcnow


class EmailTaken(Conflict):
    code = "email_taken"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == normalize_email(email)))


# --- sessions -----------------------------------------------------------------------------


def start_login(user: User) -> User:
    """Give this login its own nonce, so its remember-me cookie differs from every other."""
    user.login_nonce = secrets.token_urlsafe(12)
    return user


def user_for_login_id(login_id: str) -> User | None:
    """The user a session or remember-me cookie names, unless its session version is stale."""
    parts = login_id.split(":")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None  # includes ids from before versions existed: those sessions end
    user = db.session.get(User, int(parts[0]))
    if user is None or user.session_version != int(parts[1]):
        return None
    user.login_nonce = parts[2]
    return user


def stage_session_end(user: User) -> None:
    """Raise the session version in the caller's transaction (SQL arithmetic: no lost bump)."""
    db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(session_version=User.session_version + 1)
        .execution_options(synchronize_session=False)
    )
    db.session.refresh(user, ["session_version"])


def end_all_sessions(user: User) -> None:
    """Log out: every session and remember-me cookie of this user stops working."""
    stage_session_end(user)
    db.session.commit()


def authenticate(email: str, password: str) -> User | None:
    """The user whose password matches, else None; unknown emails cost the same time."""
    user = find_user(email)
    if not verify_password(user.password_hash if user else None, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    db.session.commit()
    return start_login(user)


# --- accounts -----------------------------------------------------------------------------


def create_user(
    email: str, password: str | None, *, is_admin: bool = False, verified: bool = True
) -> User:
    """A user (``flask user create``, the demo, tests): verified unless it signed itself up."""
    if password is not None:
        check_new_password(password)
    user = User(
        email=normalize_email(email),
        password_hash=hash_password(password) if password else None,
        is_admin=is_admin,
        email_verified_at=utcnow() if verified else None,
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
    bonus_granted: bool


def signup(email: str, password: str, organization_name: str) -> Signup:
    """A new user, their organization (slug from its name), owner role and a verification
    link, in one transaction; the sign-up bonus then, or (with
    ``PORTAL_SIGNUP_REQUIRE_VERIFICATION``) when the link is followed."""
    check_new_password(password)
    address, name = normalize_email(email), organization_name.strip()
    password_hash = hash_password(password)
    for _ in range(3):  # a concurrent sign-up may take the same slug (or email) first
        if find_user(address) is not None:
            raise EmailTaken("An account with this email already exists.")
        try:
            user = User(email=address, password_hash=password_hash, is_admin=False)
            # Opened empty, as ``create_organization`` does; credits arrive only by a grant.
            organization = Organization(
                slug=organizations.unique_slug(name), name=name, balance=0, reserved=0
            )
            db.session.add_all([user, organization])
            db.session.flush()
            user.signup_organization_id = organization.id
            db.session.add(
                Membership(user_id=user.id, organization_id=organization.id, role="owner")
            )
            message = _verification_email(user)
            db.session.commit()
            break
        except IntegrityError:
            db.session.rollback()
    else:
        raise Conflict("Could not allocate an organization address; please retry.")
    granted = False
    if not current_app.config["PORTAL_SIGNUP_REQUIRE_VERIFICATION"]:
        granted = grant_signup_bonus(organization.id)
    mail.send([message])
    return Signup(start_login(user), organization, granted)


def _verification_email(user: User) -> mail.Email:
    """Stage a verification link for the user's current address and compose its email."""
    token = tokens.issue(user, "email_verify", user.email)
    return mail.compose(
        user.email,
        "Verify your email address",
        "verify_email",
        url=mail.absolute_url("account.verify_email", token=token),
        bonus=signup_bonus_credits(),
    )


def resend_verification(user: User) -> bool:
    """Mail a new verification link; False when the address is verified already."""
    if user.email_verified:
        return False
    message = _verification_email(user)
    db.session.commit()
    mail.send([message])
    return True


def signup_bonus_credits() -> int:
    return parse_micros(str(current_app.config["PORTAL_SIGNUP_CREDITS"]), allow_zero=True)


def signup_bonus_source(organization_id: int) -> str:
    return f"signup:{organization_id}"


def signup_bonus_granted(organization_id: int) -> bool:
    return (
        db.session.scalar(
            select(LedgerEntry.id).where(
                LedgerEntry.kind == "signup_bonus",
                LedgerEntry.source_ref == signup_bonus_source(organization_id),
            )
        )
        is not None
    )


def grant_signup_bonus(organization_id: int) -> bool:
    """The sign-up bonus, at most once per organization: the ledger's unique (kind,
    source_ref) turns a second grant into ``DuplicateGrant`` (after rolling back). The grant
    commits the caller's staged changes with it; False (and a plain commit) when there is
    no bonus to give."""
    bonus = signup_bonus_credits()
    if bonus <= 0 or signup_bonus_granted(organization_id):
        db.session.commit()
        return False
    credits.grant(
        organization_id,
        bonus,
        "signup_bonus",
        description="Sign-up bonus",
        source_ref=signup_bonus_source(organization_id),
        terms=credits.GrantTerms(expires_at=signup_bonus_expiry(utcnow())),
    )
    return True


def signup_bonus_expiry(granted_at: datetime) -> datetime | None:
    """``PORTAL_SIGNUP_CREDITS_EXPIRE_DAYS`` after the grant (not after sign-up: the bonus
    may wait for the email to be verified); 0 or empty: the bonus never expires."""
    days = current_app.config.get("PORTAL_SIGNUP_CREDITS_EXPIRE_DAYS")
    days = int(days) if days not in (None, "") else 0
    return granted_at + timedelta(days=days) if days > 0 else None


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
