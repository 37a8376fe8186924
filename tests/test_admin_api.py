"""JSON admin API for feature pricing: every method, every error, exact credits, access, CSRF."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from portal.credits import pricing
from portal.credits.models import FeaturePrice, PriceChange
from portal.extensions import db
from tests.conftest import assert_error, credits
from tests.web_helpers import Web

BASE = "/api/admin/feature-pricing"
NEW = {
    "feature_key": "ocr_page",
    "name": "OCR page",
    "category": "Documents",
    "credits": Decimal("0.000001"),
    "unit": "page",
    "description": "Text from one scanned page.",
    "active": True,
}


@pytest.fixture
def web(client) -> Web:
    return Web(client)


@pytest.fixture
def admin(web):
    return web.login_admin()


@pytest.fixture
def price(make_price):
    return make_price("seedream_text_to_image", "5", category="Image Generation")


def post(client, body, **kwargs):
    return client.post(
        BASE, data=json_text(client, body), content_type="application/json", **kwargs
    )


def patch(client, price_id, body):
    return client.patch(
        f"{BASE}/{price_id}", data=json_text(client, body), content_type="application/json"
    )


def json_text(client, body) -> str:
    """Decimals as JSON numbers, as a careful client sends them."""
    return client.application.json.dumps(body)


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def changes(feature_key: str) -> list[PriceChange]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(PriceChange)
            .where(PriceChange.feature_key == feature_key)
            .order_by(PriceChange.id)
        )
    )


# --- reads -----------------------------------------------------------------------------------


def test_list_features(client, admin, price, make_price):
    make_price("kling_image_to_video", "10.5", category="Video Generation")
    response = client.get(BASE)
    assert response.status_code == 200 and response.mimetype == "application/json"
    data = response.json["data"]
    assert [item["feature_key"] for item in data] == [
        "seedream_text_to_image",
        "kling_image_to_video",
    ]
    first = data[0]
    assert first == {
        "id": price.id,
        "feature_key": "seedream_text_to_image",
        "name": "Seedream text to image",
        "category": "Image Generation",
        "credits": 5,
        "unit": "call",
        "description": None,
        "active": True,
        "archived": False,
        "archived_at": None,
        "created_at": first["created_at"],
        "updated_at": first["updated_at"],
    }
    assert first["created_at"].endswith("Z")
    assert '"credits":10.5' in response.get_data(as_text=True)  # a JSON number, not a string


def test_list_search_and_status(client, admin, price, make_price):
    make_price("kling_image_to_video", 10, category="Video Generation", active=False)
    keys = lambda r: [item["feature_key"] for item in r.json["data"]]  # noqa: E731
    assert keys(client.get(BASE, query_string={"q": "VIDEO"})) == ["kling_image_to_video"]
    assert keys(client.get(BASE, query_string={"status": "active"})) == ["seedream_text_to_image"]
    assert keys(client.get(BASE, query_string={"status": "inactive"})) == ["kling_image_to_video"]
    assert keys(client.get(BASE, query_string={"status": "archived"})) == []
    bad = client.get(BASE, query_string={"status": "gone"})
    assert_error(bad, 422, "invalid_request", field="status")


def test_get_one_and_404(client, admin, price):
    response = client.get(f"{BASE}/{price.id}")
    assert response.status_code == 200 and response.json["feature_key"] == price.feature_key
    assert_error(client.get(f"{BASE}/9999"), 404, "not_found")


# --- create ----------------------------------------------------------------------------------


def test_create_feature(client, admin):
    response = post(client, NEW)
    assert response.status_code == 201, response.json
    body = response.json
    assert response.headers["Location"].endswith(f"{BASE}/{body['id']}")
    assert body["credits"] == Decimal("0.000001")
    assert '"credits":0.000001' in response.get_data(as_text=True)
    stored = db.session.get(FeaturePrice, body["id"])
    assert stored.credits_per_unit == 1 and stored.unit == "page"
    [change] = changes("ocr_page")
    assert change.action == "created" and change.user_id == admin.id


def test_create_with_defaults(client, admin):
    response = post(client, {"feature_key": "tiny", "name": "Tiny", "credits": 0})
    assert response.status_code == 201
    body = response.json
    assert (body["category"], body["unit"], body["active"], body["credits"]) == (
        "General",
        "call",
        True,
        0,
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"feature_key": None}, "feature_key"),
        ({"feature_key": "Bad-Key"}, "feature_key"),
        ({"feature_key": 12}, "feature_key"),
        ({"name": None}, "name"),
        ({"name": "   "}, "name"),
        ({"name": 5}, "name"),
        ({"credits": None}, "credits"),
        ({"credits": "5"}, "credits"),
        ({"credits": -1}, "credits"),
        ({"credits": Decimal("0.0000001")}, "credits"),
        ({"credits": True}, "credits"),
        ({"category": ""}, "category"),
        ({"unit": "u" * 33}, "unit"),
        ({"description": ["x"]}, "description"),
        ({"active": "yes"}, "active"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_create_rejects_invalid_fields(client, admin, change, field):
    body = {**NEW, **change}
    body = {name: value for name, value in body.items() if value is not None}
    response = post(client, body)
    error = assert_error(response, 422, "invalid_request", field=field)
    assert error["message"].startswith(f"{field}: ")
    assert count(FeaturePrice) == 0 and count(PriceChange) == 0


def test_create_duplicate_key_is_409(client, admin, price):
    response = post(client, {**NEW, "feature_key": price.feature_key})
    assert_error(response, 409, "feature_key_taken", field="feature_key")
    assert count(FeaturePrice) == 1


def test_a_duplicate_that_slips_past_the_check_is_still_409(client, admin, price, monkeypatch):
    """Two admins racing: the unique constraint, not the pre-check, has the last word."""
    monkeypatch.setattr(pricing, "_ensure_key_free", lambda feature_key: None)
    response = post(client, {**NEW, "feature_key": price.feature_key})
    assert_error(response, 409, "feature_key_taken", field="feature_key")
    assert count(FeaturePrice) == 1 and len(changes(price.feature_key)) == 1


def test_create_with_invalid_json(client, admin):
    response = client.post(BASE, data="{not json", content_type="application/json")
    assert_error(response, 400, "invalid_json")
    response = client.post(BASE, data="[1, 2]", content_type="application/json")
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data", None]
)
def test_writes_must_declare_json(client, admin, price, content_type):
    """A cross-site form can send these content types; the API refuses them all."""
    kwargs = {"data": json_text(client, NEW)}
    if content_type:
        kwargs["content_type"] = content_type
    assert_error(client.post(BASE, **kwargs), 415, "unsupported_media_type")
    assert_error(client.patch(f"{BASE}/{price.id}", **kwargs), 415, "unsupported_media_type")
    assert_error(client.delete(f"{BASE}/{price.id}", **kwargs), 415, "unsupported_media_type")
    assert_error(client.post(f"{BASE}/{price.id}/restore", **kwargs), 415, "unsupported_media_type")
    assert count(FeaturePrice) == 1 and len(changes(price.feature_key)) == 1


# --- update ----------------------------------------------------------------------------------


def test_patch_changes_fields_and_records_old_and_new(client, admin, price):
    response = patch(client, price.id, {"credits": Decimal("7.25"), "name": "SeeDream"})
    assert response.status_code == 200
    assert response.json["credits"] == Decimal("7.25") and response.json["name"] == "SeeDream"
    change = changes(price.feature_key)[-1]
    assert change.action == "updated" and change.user_id == admin.id
    assert change.changes == {
        "credits_per_unit": [credits(5), credits("7.25")],
        "name": ["Seedream text to image", "SeeDream"],
    }


def test_patch_active_is_a_deactivation(client, admin, price):
    assert patch(client, price.id, {"active": False}).json["active"] is False
    assert changes(price.feature_key)[-1].action == "deactivated"
    assert patch(client, price.id, {"active": True}).json["active"] is True
    assert changes(price.feature_key)[-1].action == "activated"


def test_patch_with_same_key_is_fine_other_key_is_not(client, admin, price):
    assert patch(client, price.id, {"feature_key": price.feature_key}).status_code == 200
    response = patch(client, price.id, {"feature_key": "renamed"})
    assert_error(response, 422, "invalid_request", field="feature_key")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"credits": -5}, "credits"),
        ({"credits": None}, "credits"),
        ({"credits": "1"}, "credits"),
        ({"name": ""}, "name"),
        ({"active": None}, "active"),
        ({"archived_at": None}, "archived_at"),
    ],
)
def test_patch_rejects_invalid_fields(client, admin, price, body, field):
    assert_error(patch(client, price.id, body), 422, "invalid_request", field=field)
    db.session.expire_all()
    assert db.session.get(FeaturePrice, price.id).credits_per_unit == credits(5)


def test_patch_unknown_is_404(client, admin):
    assert_error(patch(client, 424242, {"name": "x"}), 404, "not_found")


# --- delete and restore ----------------------------------------------------------------------


def test_delete_unused_feature(client, admin, price):
    response = client.delete(f"{BASE}/{price.id}")
    assert response.status_code == 200
    assert response.json["result"] == "deleted"
    assert response.json["feature"]["feature_key"] == "seedream_text_to_image"
    assert_error(client.get(f"{BASE}/{price.id}"), 404, "not_found")
    assert [c.action for c in changes("seedream_text_to_image")] == ["created", "deleted"]


def test_delete_used_feature_archives_it(client, admin, api, make_org, price):
    org = make_org()
    assert (
        api.post("/credits/deduct", org, json={"feature_key": price.feature_key}).status_code == 201
    )
    response = client.delete(f"{BASE}/{price.id}", json={})  # a JSON body is allowed
    assert response.status_code == 200
    assert response.json["result"] == "archived"
    feature = response.json["feature"]
    assert feature["archived"] is True and feature["active"] is False
    assert feature["archived_at"].endswith("Z")
    # Archived: read-only until restored; deleting again changes nothing.
    assert_error(patch(client, price.id, {"name": "x"}), 409, "feature_archived")
    assert client.delete(f"{BASE}/{price.id}").json["result"] == "archived"
    assert [c.action for c in changes(price.feature_key)] == ["created", "archived"]
    restored = client.post(f"{BASE}/{price.id}/restore", content_type="application/json")
    assert restored.status_code == 200
    assert restored.json["archived"] is False and restored.json["active"] is False
    assert changes(price.feature_key)[-1].action == "restored"


def test_delete_unknown_is_404(client, admin):
    assert_error(client.delete(f"{BASE}/31337"), 404, "not_found")


# --- access ----------------------------------------------------------------------------------

CALLS = [
    ("GET", BASE),
    ("POST", BASE),
    ("GET", BASE + "/{id}"),
    ("PATCH", BASE + "/{id}"),
    ("DELETE", BASE + "/{id}"),
    ("POST", BASE + "/{id}/restore"),
]


@pytest.mark.parametrize(("method", "path"), CALLS)
def test_anonymous_gets_401(client, price, method, path):
    response = client.open(path.format(id=price.id), method=method, json={"name": "x"})
    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize(("method", "path"), CALLS)
def test_member_gets_403(client, web, make_org, price, method, path):
    web.login_member(make_org().id)
    response = client.open(path.format(id=price.id), method=method, json={"name": "x"})
    assert_error(response, 403, "forbidden")
    assert [c.action for c in changes(price.feature_key)] == ["created"]


@pytest.mark.csrf
def test_json_writes_need_no_form_token_but_forms_are_refused(client, web, price):
    web.login_admin()
    response = post(client, NEW)
    assert response.status_code == 201, response.json
    assert patch(client, price.id, {"credits": 6}).status_code == 200
    # What a forged cross-site form would send:
    forged = client.post(BASE, data={"feature_key": "evil", "name": "Evil", "credits": "0"})
    assert_error(forged, 415, "unsupported_media_type")
    assert db.session.scalar(select(FeaturePrice).where(FeaturePrice.feature_key == "evil")) is None
