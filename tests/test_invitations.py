"""Invitations are mailed to one address and only that account may accept; owners and admins
revoke and re-send them from /settings/members."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.auth import invitations
from portal.auth.models import Invitation, Membership, User
from portal.extensions import db
from tests.mail_helpers import link, text_body


@pytest.fixture
def org(make_org, make_user):
    org = make_org(slug="acme")
    make_user("owner@example.com", org=org, role="owner")
    return org


def invite(client, auth, mailbox, email: str = "joiner@example.com", role: str = "member") -> str:
    """Invite through the members page as the owner; log out; return the mailed link's path."""
    auth.login("owner@example.com")
    response = client.post("/settings/members", data={"email": email, "role": role})
    assert response.status_code == 303, response.get_data(as_text=True)
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    page_url = re.search(r'data-testid="invite-url">([^<]+)<', page)
    path = link(mailbox.last(email), "/invite/")
    assert page_url.group(1).endswith(path)
    # Shown once: a reload shows no link and sends no second invitation.
    assert 'data-testid="invite-url"' not in client.get("/settings/members").get_data(as_text=True)
    assert len(mailbox.to(email)) == 1
    auth.logout()
    return path


def memberships(email: str) -> list[tuple[int, str]]:
    db.session.expire_all()
    user = db.session.scalar(select(User).where(User.email == email))
    return [(m.organization_id, m.role) for m in user.memberships]


def pending(org_id: int) -> list[Invitation]:
    db.session.expire_all()
    return invitations.pending_invitations(org_id)


def test_the_invited_address_accepts_once(client, auth, mailbox, org, make_user):
    make_user("joiner@example.com")
    path = invite(client, auth, mailbox)
    message = mailbox.last("joiner@example.com")
    assert "Acme" in message["Subject"] and "owner@example.com" in text_body(message)
    anonymous = client.get(path)
    assert anonymous.status_code == 200 and "Log in" in anonymous.get_data(as_text=True)
    auth.login("joiner@example.com")
    assert client.get(path).status_code == 200
    assert client.post(path).status_code == 302
    assert memberships("joiner@example.com") == [(org.id, "member")]
    again = client.post(path)
    assert again.status_code == 404 and "already accepted" in again.get_data(as_text=True)


def test_another_user_cannot_accept_and_the_link_stays_valid(client, auth, mailbox, org, make_user):
    make_user("joiner@example.com")
    make_user("intruder@example.com")
    path = invite(client, auth, mailbox)
    auth.login("intruder@example.com")
    shown = client.get(path)
    assert shown.status_code == 403
    page = shown.get_data(as_text=True)
    assert "This invitation is for joiner@example.com" in page and "Join as" not in page
    refused = client.post(path)
    assert refused.status_code == 403 and "joiner@example.com" in refused.get_data(as_text=True)
    assert memberships("intruder@example.com") == []
    auth.logout()
    auth.login("joiner@example.com")
    assert client.post(path).status_code == 302  # not consumed by the refusal
    assert memberships("joiner@example.com") == [(org.id, "member")]


def test_an_existing_member_is_told_so_and_nothing_is_consumed(
    client, auth, mailbox, org, make_user
):
    joiner = make_user("joiner@example.com")
    path = invite(client, auth, mailbox, role="admin")
    from portal.auth import service as people

    people.add_membership(joiner, org.id, "member")  # joined another way meanwhile
    auth.login("joiner@example.com")
    shown = client.get(path)
    assert "already a member" in shown.get_data(as_text=True)
    refused = client.post(path)
    assert refused.status_code == 409 and "already a member" in refused.get_data(as_text=True)
    assert memberships("joiner@example.com") == [(org.id, "member")]  # the role is unchanged
    assert [i.email for i in pending(org.id)] == ["joiner@example.com"]


def test_inviting_a_current_member_is_a_field_error(client, auth, mailbox, org):
    auth.login("owner@example.com")
    response = client.post("/settings/members", data={"email": "owner@example.com"})
    assert response.status_code == 422 and "already a member" in response.get_data(as_text=True)
    assert mailbox.messages == [] and pending(org.id) == []


def test_an_invitation_needs_an_email(client, auth, org):
    auth.login("owner@example.com")
    response = client.post("/settings/members", data={"role": "member"})
    assert response.status_code == 422 and pending(org.id) == []


def test_an_unverified_account_verifies_before_accepting(client, auth, mailbox, org):
    path = invite(client, auth, mailbox, email="fresh@example.com")
    client.post(
        "/signup",
        data={"email": "fresh@example.com", "password": "correct-horse-9", "organization": "Own"},
    )
    refused = client.post(path)
    assert refused.status_code == 403 and "Verify your email" in refused.get_data(as_text=True)
    client.get(link(mailbox.last("fresh@example.com"), "/verify-email/"))
    assert client.post(path).status_code == 302
    assert (org.id, "member") in memberships("fresh@example.com")


def test_revoke_kills_the_link(client, auth, mailbox, org, make_user):
    make_user("joiner@example.com")
    path = invite(client, auth, mailbox)
    auth.login("owner@example.com")
    (invitation,) = pending(org.id)
    page = client.get("/settings/members").get_data(as_text=True)
    assert 'data-confirm="Withdraw the invitation of joiner@example.com?"' in page
    response = client.post(f"/settings/members/invitations/{invitation.id}/revoke")
    assert response.status_code == 302 and pending(org.id) == []
    auth.logout()
    auth.login("joiner@example.com")
    refused = client.post(path)
    assert refused.status_code == 404 and "withdrawn" in refused.get_data(as_text=True)
    assert memberships("joiner@example.com") == []


def test_resend_mails_a_new_link_and_the_old_one_dies(client, auth, mailbox, org, make_user):
    make_user("joiner@example.com")
    old_path = invite(client, auth, mailbox)
    auth.login("owner@example.com")
    (invitation,) = pending(org.id)
    response = client.post(f"/settings/members/invitations/{invitation.id}/resend")
    assert response.status_code == 302
    new_path = link(mailbox.last("joiner@example.com"), "/invite/")
    assert new_path != old_path and len(mailbox.to("joiner@example.com")) == 2
    auth.logout()
    auth.login("joiner@example.com")
    assert client.post(old_path).status_code == 404
    assert client.post(new_path).status_code == 302
    assert memberships("joiner@example.com") == [(org.id, "member")]


@pytest.mark.parametrize("action", ["resend", "revoke"])
def test_members_cannot_revoke_or_resend(client, auth, mailbox, org, make_user, action):
    make_user("plain@example.com", org=org, role="member")
    invite(client, auth, mailbox)
    (invitation,) = pending(org.id)
    auth.login("plain@example.com")
    response = client.post(f"/settings/members/invitations/{invitation.id}/{action}")
    assert response.status_code == 403
    assert [i.id for i in pending(org.id)] == [invitation.id]


@pytest.mark.parametrize("action", ["resend", "revoke"])
def test_accepted_invitations_cannot_be_revoked_or_resent(
    client, auth, mailbox, org, make_user, action
):
    make_user("joiner@example.com")
    path = invite(client, auth, mailbox)
    invitation_id = pending(org.id)[0].id
    auth.login("joiner@example.com")
    client.post(path)
    auth.logout()
    auth.login("owner@example.com")
    response = client.post(f"/settings/members/invitations/{invitation_id}/{action}")
    assert response.status_code == 404
    assert (
        db.session.scalar(
            select(Membership.role)
            .join(User, User.id == Membership.user_id)
            .where(User.email == "joiner@example.com")
        )
        == "member"
    )
