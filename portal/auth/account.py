"""Accounts people can recover: password reset, password and email changes, verification.

Each operation commits once, then sends its emails (never inside the transaction). Links are
single use (``tokens.spend``); a password change or reset ends every other session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from portal import mail
from portal.auth import tokens
from portal.auth.models import AccountToken, User
from portal.auth.passwords import check_new_password, hash_password, verify_password
from portal.auth.service import (
    find_user,
    grant_signup_bonus,
    normalize_email,
    stage_session_end,
    start_login,
)
from portal.credits.service import DuplicateGrant
from portal.errors import Conflict, InvalidRequest
from portal.extensions import db
from portal.timeutil import utcnow


def request_password_reset(email: str) -> None:
    """Mail a one-hour reset link, or a note that no account uses the address.

    The caller answers the same either way; both paths make a token, hash it and send one
    email, so the time taken does not tell whether the address has an account either.
    """
    address = normalize_email(email)
    user = find_user(address)
    if user is None:
        tokens.new_token()  # the same work as a real link, thrown away
        message = mail.compose(
            address,
            "Password reset requested",
            "reset_no_account",
            signup_url=mail.absolute_url("auth.signup"),
        )
    else:
        token = tokens.issue(user, "password_reset", user.email)
        db.session.commit()
        message = mail.compose(
            user.email,
            "Reset your password",
            "reset_password",
            url=mail.absolute_url("account.reset_password", token=token),
        )
    mail.send([message])


def check_reset_link(token: str) -> AccountToken:
    """The reset link, if it still works (raises ``LinkNotValid`` saying why not)."""
    return _current_address_link(tokens.find(token, "password_reset"))


def reset_password(token: str, password: str) -> User:
    """Set a new password through a reset link; spends the link, ends every session."""
    check_new_password(password)
    record = _current_address_link(tokens.spend(token, "password_reset"))
    user = record.user
    user.password_hash = hash_password(password)
    tokens.spend_all(user.id, "password_reset")  # other reset links mailed earlier die too
    stage_session_end(user)
    db.session.commit()
    mail.send([_password_changed_email(user)])
    return user


def change_password(user: User, current_password: str, new_password: str) -> User:
    """A signed-in change: the current password is required; every other session ends and
    the returned user carries a fresh login for the session that made the change."""
    if not verify_password(user.password_hash, current_password):
        raise InvalidRequest("current_password", "is not right")
    check_new_password(new_password, "new_password")
    if new_password == current_password:
        raise InvalidRequest("new_password", "must differ from the current password")
    user.password_hash = hash_password(new_password)
    tokens.spend_all(user.id, "password_reset")
    stage_session_end(user)
    db.session.commit()
    mail.send([_password_changed_email(user)])
    return start_login(user)


def request_email_change(user: User, new_email: str, current_password: str) -> str:
    """Mail a confirmation link to the new address and a notice to the current one; the
    address changes only when the link is followed. Returns the new address."""
    if not verify_password(user.password_hash, current_password):
        raise InvalidRequest("current_password", "is not right")
    address = normalize_email(new_email)
    if address == user.email:
        raise InvalidRequest("email", "is already the address of this account")
    if find_user(address) is not None:
        raise InvalidRequest("email", "is used by another account")
    token = tokens.issue(user, "email_change", address)
    db.session.commit()
    mail.send(
        [
            mail.compose(
                address,
                "Confirm your new email address",
                "email_change_confirm",
                url=mail.absolute_url("account.confirm_email_change", token=token),
                old_email=user.email,
            ),
            mail.compose(
                user.email,
                "Your email address is being changed",
                "email_change_notice",
                new_email=address,
                reset_url=mail.absolute_url("account.forgot_password"),
            ),
        ]
    )
    return address


@dataclass(frozen=True)
class Verified:
    user: User
    bonus_granted: bool


def verify_email(token: str) -> Verified:
    """Follow a verification link: the address is verified; a sign-up bonus is granted once."""

    def stage() -> User:
        user = _current_address_link(tokens.spend(token, "email_verify")).user
        user.email_verified_at = user.email_verified_at or utcnow()
        return user

    return _verify(stage)


def confirm_email_change(token: str) -> Verified:
    """Follow the link mailed to a new address: the account's email becomes it (verified)."""

    def stage() -> User:
        record = tokens.spend(token, "email_change")
        user = record.user
        taken = find_user(record.email)
        if taken is not None and taken.id != user.id:
            db.session.rollback()
            raise Conflict("Another account uses that address now; the change was not made.")
        user.email = record.email
        user.email_verified_at = utcnow()
        tokens.spend_all(user.id, "password_reset")  # links mailed to the old address
        tokens.spend_all(user.id, "email_verify")
        return user

    try:
        return _verify(stage)
    except IntegrityError:  # the address was taken between the check and the commit
        db.session.rollback()
        raise Conflict("Another account uses that address now; the change was not made.") from None


def _verify(stage: Callable[[], User]) -> Verified:
    """Stage the verification, then commit it together with any sign-up bonus that waited for
    it. A concurrent verification that granted first rolls ours back: stage again, no bonus."""
    user = stage()
    organization_id = user.signup_organization_id
    if organization_id is not None:
        try:
            return Verified(user, grant_signup_bonus(organization_id))
        except DuplicateGrant:
            user = stage()
    db.session.commit()
    return Verified(user, False)


def _current_address_link(record: AccountToken) -> AccountToken:
    """A link mailed to an address the account no longer uses is dead."""
    if record.email != record.user.email:
        db.session.rollback()
        raise tokens.LinkNotValid("This link was sent to an address this account no longer uses.")
    return record


def _password_changed_email(user: User) -> mail.Email:
    return mail.compose(
        user.email,
        "Your password was changed",
        "password_changed",
        reset_url=mail.absolute_url("account.forgot_password"),
    )
