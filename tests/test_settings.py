"""API keys, departments and members pages: owners and admins manage, members read."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.auth.models import Membership
from portal.credits.models import ApiKey, Department
from portal.extensions import db
from tests.conftest import credits


@pytest.fixture
def owner(make_org, make_user, auth):
    org = make_org(slug="acme")
    make_user("owner@example.com", org=org, role="owner")
    auth.login("owner@example.com")
    return org


def test_create_api_key_shows_secret_once_and_it_works(client, owner):
    response = client.post("/settings/api-keys", data={"name": "Image service"})
    # Post/redirect/get: a reload of the page that follows creates nothing.
    assert response.status_code == 303
    assert response.headers["Location"] == "/settings/api-keys"
    page = client.get("/settings/api-keys")
    assert page.headers["Cache-Control"] == "no-store"
    secret = re.search(r'data-testid="new-api-key">([^<]+)<', page.get_data(as_text=True))
    secret = secret.group(1)
    assert secret not in response.headers["Location"]
    balance = client.get("/api/v1/balance", headers={"Authorization": f"Bearer {secret}"})
    assert balance.status_code == 200 and balance.json["organization"] == "acme"
    reloaded = client.get("/settings/api-keys").get_data(as_text=True)
    assert "Image service" in reloaded and secret not in reloaded
    assert 'data-testid="new-api-key"' not in reloaded
    (key,) = db.session.scalars(select(ApiKey).where(ApiKey.name == "Image service"))
    assert key.prefix in reloaded and key.secret_hash != secret


def test_the_new_secret_is_shown_only_in_its_own_organization(client, owner, make_org):
    from portal.auth import service as people

    other = make_org(slug="other")
    people.add_membership(people.find_user("owner@example.com"), other.id, "owner")
    client.post("/settings/api-keys", data={"name": "Stashed"})
    with client.session_transaction() as session:
        session["organization_id"] = other.id  # switched organization before the GET
    assert 'data-testid="new-api-key"' not in client.get("/settings/api-keys").get_data(
        as_text=True
    )
    with client.session_transaction() as session:
        assert "new_api_key" not in session  # dropped, not kept for later


def test_api_key_name_is_required(client, owner):
    response = client.post("/settings/api-keys", data={"name": ""})
    assert response.status_code == 422 and 'id="name-error"' in response.get_data(as_text=True)
    assert db.session.scalar(select(ApiKey).where(ApiKey.name == "")) is None


def test_revoke_api_key(client, owner):
    secret = owner.api_key
    key = db.session.scalar(select(ApiKey).where(ApiKey.organization_id == owner.id))
    assert client.post(f"/settings/api-keys/{key.id}/revoke").status_code == 302
    assert "revoked" in client.get("/settings/api-keys").get_data(as_text=True)
    refused = client.get("/api/v1/balance", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401


def test_departments_create_limit_and_clear(client, owner):
    assert (
        client.post("/settings/departments", data={"name": "Research", "monthly_limit": "12.5"})
    ).status_code == 302
    department = db.session.scalar(select(Department).where(Department.name == "Research"))
    assert department.monthly_limit == credits("12.5")
    client.post(f"/settings/departments/{department.id}/limit", data={"monthly_limit": ""})
    db.session.refresh(department)
    assert department.monthly_limit is None
    client.post(f"/settings/departments/{department.id}/limit", data={"monthly_limit": "3"})
    db.session.refresh(department)
    assert department.monthly_limit == credits(3)
    assert "Research" in client.get("/settings/departments").get_data(as_text=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "", "monthly_limit": ""}, "required"),
        ({"name": "Bad/Name", "monthly_limit": ""}, "letters"),
        ({"name": "Ops", "monthly_limit": "1.1234567"}, "6 decimal places"),
        ({"name": "Ops", "monthly_limit": "-4"}, "negative"),
        ({"name": "Ops", "monthly_limit": "lots"}, "Type an amount like 1234.5"),
    ],
)
def test_department_form_errors(client, owner, data, message):
    response = client.post("/settings/departments", data=data)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(select(Department.id)) is None


@pytest.mark.parametrize("second", ["Ops", "ops", "OPS"])
def test_duplicate_department_is_refused(client, owner, second):
    client.post("/settings/departments", data={"name": "Ops", "monthly_limit": "5"})
    response = client.post("/settings/departments", data={"name": second, "monthly_limit": "9"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "A department named &#39;Ops&#39; already exists." in page
    (department,) = db.session.scalars(select(Department))
    assert (department.name, department.monthly_limit) == ("Ops", credits(5))


def test_members_roles_and_last_owner(client, owner, make_user):
    member = make_user("m@example.com", org=owner, role="member")
    page = client.get("/settings/members").get_data(as_text=True)
    assert "m@example.com" in page and "owner@example.com" in page
    membership = db.session.scalar(select(Membership).where(Membership.user_id == member.id))
    client.post(f"/settings/members/{membership.id}/role", data={"role": "admin"})
    db.session.refresh(membership)
    assert membership.role == "admin"
    mine = db.session.scalar(
        select(Membership).where(Membership.role == "owner", Membership.organization_id == owner.id)
    )
    response = client.post(f"/settings/members/{mine.id}/role", data={"role": "member"})
    assert "at least one owner" in client.get(response.headers["Location"]).get_data(as_text=True)
    db.session.refresh(mine)
    assert mine.role == "owner"
    client.post(f"/settings/members/{membership.id}/remove")
    assert db.session.get(Membership, membership.id) is None


def test_members_cannot_manage(client, make_org, make_user, auth):
    org = make_org()
    make_user("m@example.com", org=org, role="member")
    auth.login("m@example.com")
    assert client.get("/settings/api-keys").status_code == 403
    assert client.post("/settings/api-keys", data={"name": "x"}).status_code == 403
    assert client.post("/settings/departments", data={"name": "x"}).status_code == 403
    assert client.post("/settings/members", data={"role": "member"}).status_code == 403
    page = client.get("/settings/departments")
    assert page.status_code == 200 and "New department" not in page.get_data(as_text=True)
    assert client.get("/settings").headers["Location"] == "/settings/departments"


def test_admin_cannot_invite_owner(client, make_org, make_user, auth):
    org = make_org()
    make_user("a@example.com", org=org, role="admin")
    auth.login("a@example.com")
    response = client.post("/settings/members", data={"role": "owner", "email": "boss@example.com"})
    assert response.status_code == 422 and "Only an owner" in response.get_data(as_text=True)
