"""Invitations: a link mailed to one address, accepted only by the account with that address.

Pending invitations can be revoked or re-sent (a new token: the old link dies). Accepting is
a conditional UPDATE on a pending row, so a link is spent once, and never by someone who is
already a member.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from portal import mail
from portal.auth import tokens
from portal.auth.models import ROLES, Invitation, Membership, User
from portal.auth.service import normalize_email
from portal.errors import Conflict, Forbidden, InvalidRequest, NotFound
from portal.extensions import db
from portal.timeutil import utcnow

INVITATION_LIFETIME = timedelta(days=7)


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str
    url: str


def _is_member(user_id: int, organization_id: int) -> bool:
    return (
        db.session.scalar(
            select(Membership.id).where(
                Membership.user_id == user_id, Membership.organization_id == organization_id
            )
        )
        is not None
    )


def _member_with_email(organization_id: int, email: str) -> bool:
    return (
        db.session.scalar(
            select(Membership.id)
            .join(User, User.id == Membership.user_id)
            .where(Membership.organization_id == organization_id, User.email == email)
        )
        is not None
    )


def invite(organization_id: int, role: str, email: str, by_user: User) -> NewInvitation:
    """Create an invitation for ``email`` and mail its link (after the commit)."""
    if role not in ROLES:
        raise InvalidRequest("role", f"must be one of {', '.join(ROLES)}")
    address = normalize_email(email or "")
    if not address:
        raise InvalidRequest("email", "is required: an invitation is for one address")
    if _member_with_email(organization_id, address):
        raise InvalidRequest("email", f"{address} is already a member")
    token, digest = tokens.new_token()
    invitation = Invitation(
        organization_id=organization_id,
        email=address,
        role=role,
        token_hash=digest,
        created_by_user_id=by_user.id,
        expires_at=utcnow() + INVITATION_LIFETIME,
    )
    db.session.add(invitation)
    db.session.commit()
    return _mailed(invitation, token, by_user)


def _pending(organization_id: int, invitation_id: int) -> Invitation:
    invitation = db.session.scalar(
        select(Invitation).where(
            Invitation.id == invitation_id,
            Invitation.organization_id == organization_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
    )
    if invitation is None:
        raise NotFound("No such pending invitation in this organization.")
    return invitation


def revoke(organization_id: int, invitation_id: int) -> Invitation:
    """Withdraw a pending invitation: its link stops working."""
    invitation = _pending(organization_id, invitation_id)
    revoked = db.session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if revoked.rowcount != 1:  # accepted or revoked a moment ago
        db.session.rollback()
        raise NotFound("No such pending invitation in this organization.")
    db.session.commit()
    return invitation


def resend(organization_id: int, invitation_id: int, by_user: User) -> NewInvitation:
    """A new link (the old one dies) valid for another full lifetime, mailed again."""
    invitation = _pending(organization_id, invitation_id)
    token, digest = tokens.new_token()
    renewed = db.session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(token_hash=digest, expires_at=utcnow() + INVITATION_LIFETIME)
        .execution_options(synchronize_session=False)
    )
    if renewed.rowcount != 1:
        db.session.rollback()
        raise NotFound("No such pending invitation in this organization.")
    db.session.commit()
    db.session.refresh(invitation)
    return _mailed(invitation, token, by_user)


def _mailed(invitation: Invitation, token: str, by_user: User) -> NewInvitation:
    url = mail.absolute_url("auth.accept_invitation", token=token)
    mail.send(
        [
            mail.compose(
                invitation.email,
                f"You are invited to {invitation.organization.name}",
                "invitation",
                url=url,
                invitation=invitation,
                inviter=by_user.email,
                days=INVITATION_LIFETIME.days,
            )
        ]
    )
    return NewInvitation(invitation, token, url)


def pending_invitations(organization_id: int) -> list[Invitation]:
    return list(
        db.session.scalars(
            select(Invitation)
            .where(
                Invitation.organization_id == organization_id,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > utcnow(),
            )
            .order_by(Invitation.created_at.desc())
        )
    )


def invitation_for(token: str) -> Invitation:
    invitation = db.session.scalar(
        select(Invitation).where(Invitation.token_hash == tokens.token_hash(token))
    )
    if invitation is None:
        raise NotFound("This invitation link is not valid (a newer link may have replaced it).")
    if invitation.accepted_at is not None:
        raise NotFound("This invitation was already accepted.")
    if invitation.revoked_at is not None:
        raise NotFound("This invitation was withdrawn by the organization.")
    if invitation.expires_at <= utcnow():
        raise NotFound("This invitation link has expired; ask for a new one.")
    return invitation


def refusal(invitation: Invitation, user: User) -> str | None:
    """Why ``user`` may not accept ``invitation``, in words for the page; None if they may."""
    if invitation.email != user.email:
        return (
            f"This invitation is for {invitation.email}, and you are signed in as "
            f"{user.email}. Log out and sign in (or sign up) as {invitation.email}."
        )
    if _is_member(user.id, invitation.organization_id):
        return f"You are already a member of {invitation.organization.name}."
    if not user.email_verified:
        return "Verify your email address first: follow the link we sent you, then come back."
    return None


def accept(token: str, user: User) -> Membership:
    """Join with the invited role; only the invited address, once, and not twice over."""
    invitation = invitation_for(token)
    problem = refusal(invitation, user)
    if problem is not None:
        if _is_member(user.id, invitation.organization_id):
            raise Conflict(problem)
        raise Forbidden(problem)
    spent = db.session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            Invitation.token_hash == tokens.token_hash(token),
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(accepted_at=utcnow(), accepted_by_user_id=user.id)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        db.session.rollback()
        raise NotFound("This invitation link was already used or withdrawn.")
    membership = Membership(
        user_id=user.id, organization_id=invitation.organization_id, role=invitation.role
    )
    db.session.add(membership)
    try:
        db.session.commit()
    except IntegrityError:  # joined by another path a moment ago: nothing is spent
        db.session.rollback()
        raise Conflict(f"You are already a member of {invitation.organization.name}.") from None
    return membership
