"""Admin feature pricing editor: list, search, add, inline edit, (de)activate, delete, history."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.credits import pricing
from portal.credits.models import FeaturePrice, LedgerEntry, PriceChange
from portal.extensions import db
from tests.conftest import credits
from tests.web_helpers import Web, csrf_token

HTMX = {"HX-Request": "true"}
VALID = {
    "feature_key": "ocr_page",
    "name": "OCR page",
    "category": "Documents",
    "credits": "0.25",
    "unit": "page",
    "description": "Text from one scanned page.",
    "active": "y",
}


def text(response) -> str:
    return response.get_data(as_text=True)


def price_by_key(feature_key: str) -> FeaturePrice | None:
    db.session.expire_all()
    return db.session.scalar(select(FeaturePrice).where(FeaturePrice.feature_key == feature_key))


def changes_of(feature_key: str) -> list[PriceChange]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(PriceChange)
            .where(PriceChange.feature_key == feature_key)
            .order_by(PriceChange.id)
        )
    )


def deduct(api, org, feature_key: str):
    return api.post("/credits/deduct", org, json={"feature_key": feature_key})


@pytest.fixture
def web(client) -> Web:
    return Web(client)


@pytest.fixture
def admin(web):
    return web.login_admin()


@pytest.fixture
def catalogue(make_price):
    return {
        "image": make_price("seedream_text_to_image", 5, category="Image Generation"),
        "video": make_price("kling_image_to_video", 10, category="Video Generation"),
        "post": make_price("create_visual_post", 2, category="Image Generation"),
    }


# --- listing and search ----------------------------------------------------------------------


def test_admin_root_redirects_to_pricing(client, admin):
    for path in ("/admin", "/admin/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/admin/feature-pricing")


def test_list_groups_by_category_with_a_copy_button_per_key(client, admin, catalogue):
    page = text(client.get("/admin/feature-pricing"))
    assert 'name="csrf_token"' in page and 'id="add-feature"' in page
    html = page[page.index('data-testid="price-table"') :]
    heads = re.findall(r'<tr class="category-head"><td colspan="7">([^<]+?) <', html)
    assert heads == ["Image Generation", "Video Generation"]
    image_group = html.index("Image Generation")
    assert image_group < html.index("create_visual_post") < html.index("Video Generation")
    for price in catalogue.values():
        assert f'data-copy="{price.feature_key}"' in html
    assert html.count("data-copy=") == 3


def test_empty_list_has_an_empty_state(client, admin):
    assert "No features here" in text(client.get("/admin/feature-pricing"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kling", {"kling_image_to_video"}),  # key
        ("visual POST", {"create_visual_post"}),  # name, any case
        ("video generation", {"kling_image_to_video"}),  # category
        ("scanned", {"ocr_page"}),  # description
        ("_to_", {"seedream_text_to_image", "kling_image_to_video"}),  # '_' is literal
        ("nothing-like-this", set()),
    ],
)
def test_search_by_key_name_category_description(client, admin, catalogue, query, expected):
    pricing.create_feature(
        pricing.FeatureDraft("ocr_page", "OCR", 1, description="A scanned page"), user_id=None
    )
    html = text(client.get("/admin/feature-pricing", query_string={"q": query}))
    shown = set(re.findall(r'<tr id="price-\d+" data-key="([a-z0-9_]+)"', html))
    assert shown == expected
    if not expected:
        assert "No features match" in html


def test_htmx_search_returns_only_the_table(client, admin, catalogue):
    response = client.get("/admin/feature-pricing?q=kling", headers=HTMX)
    html = text(response)
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="price-table"') and "<html" not in html
    assert "HX-Request" in response.headers["Vary"]  # page and partial share the URL
    assert "kling_image_to_video" in html and "seedream_text_to_image" not in html
    # Status tabs inside the partial keep the search.
    assert "status=archived&amp;q=kling" in html


def test_htmx_history_restore_gets_the_whole_page(client, admin, catalogue):
    headers = {**HTMX, "HX-History-Restore-Request": "true"}
    assert "<html" in text(client.get("/admin/feature-pricing?q=kling", headers=headers))


def test_archived_features_are_filtered_separately(client, admin, api, make_org, catalogue):
    org = make_org()
    deduct(api, org, "create_visual_post")
    client.post(f"/admin/feature-pricing/{catalogue['post'].id}/delete")
    current = text(client.get("/admin/feature-pricing"))
    assert 'data-key="create_visual_post"' not in current
    archived = text(client.get("/admin/feature-pricing?status=archived"))
    assert 'data-key="create_visual_post"' in archived and "badge-archived" in archived
    assert 'data-key="seedream_text_to_image"' not in archived
    everything = text(client.get("/admin/feature-pricing?status=all"))
    assert everything.count('<tr id="price-') == 3


def test_active_and_inactive_tabs(client, admin, catalogue):
    pricing.set_active(catalogue["video"].id, False, user_id=None)
    inactive = text(client.get("/admin/feature-pricing?status=inactive"))
    assert re.findall(r'data-key="([a-z_]+)"', inactive) == ["kling_image_to_video"]
    active = text(client.get("/admin/feature-pricing?status=active"))
    assert 'data-key="kling_image_to_video"' not in active
    assert "badge-inactive" in inactive


# --- add -------------------------------------------------------------------------------------


def test_add_feature(client, admin, api, make_org):
    response = client.post("/admin/feature-pricing", data=VALID)
    assert response.status_code == 302
    price = price_by_key("ocr_page")
    assert (price.name, price.category, price.unit) == ("OCR page", "Documents", "page")
    assert price.credits_per_unit == credits("0.25") and price.active
    assert price.description == "Text from one scanned page."
    page = text(client.get(response.headers["Location"]))
    assert "Added ocr_page at 0.25 credits per page." in page
    [change] = changes_of("ocr_page")
    assert change.action == "created" and change.user_id == admin.id
    assert change.changes["credits_per_unit"] == [None, credits("0.25")]
    # The new price is live for the credits API at once.
    org = make_org(balance=1)
    assert deduct(api, org, "ocr_page").json["credits_deducted"] == 0.25


def test_add_inactive_feature_without_description(client, admin):
    data = {**VALID, "description": "  "}
    del data["active"]  # an unticked checkbox is not sent
    assert client.post("/admin/feature-pricing", data=data).status_code == 302
    price = price_by_key("ocr_page")
    assert price.active is False and price.description is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("feature_key", "OCR-Page", "Must be lowercase_with_underscores"),
        ("feature_key", "", "Must be lowercase_with_underscores"),
        ("feature_key", "ocr__page", "Must be lowercase_with_underscores"),
        ("feature_key", "x" * 101, "max 100"),
        ("credits", "", "Enter the price in credits"),
        ("credits", "-1", "The amount must not be negative."),
        ("credits", "0.0000001", "Use at most 6 decimal places"),
        ("credits", "five", "Type an amount like 1234.5 or 1,234.5"),
        ("name", "", "Is required"),
        ("name", "n" * 201, "Must be at most 200 characters"),
        ("category", " ", "Is required"),
        ("unit", "u" * 33, "Must be at most 32 characters"),
        ("description", "d" * 2001, "Must be at most 2000 characters"),
    ],
)
def test_add_feature_field_errors(client, admin, field, value, message):
    response = client.post("/admin/feature-pricing", data={**VALID, field: value})
    html = text(response)
    assert response.status_code == 422
    error = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', html)
    assert error and message in error.group(1)
    assert (
        'aria-invalid="true"' in html
        and '<details class="card add-card" id="add-feature" open' in html
    )
    assert db.session.scalar(select(func.count()).select_from(FeaturePrice)) == 0
    assert db.session.scalar(select(func.count()).select_from(PriceChange)) == 0


def test_add_feature_reports_all_field_errors_at_once(client, admin):
    data = {**VALID, "feature_key": "Bad Key", "credits": "-2", "name": ""}
    html = text(client.post("/admin/feature-pricing", data=data))
    for field in ("feature_key", "credits", "name"):
        assert f'id="{field}-error"' in html


def test_zero_credits_is_allowed(client, admin):
    assert client.post("/admin/feature-pricing", data={**VALID, "credits": "0"}).status_code == 302
    assert price_by_key("ocr_page").credits_per_unit == 0


def test_add_feature_with_a_taken_key(client, admin, catalogue):
    data = {**VALID, "feature_key": "seedream_text_to_image"}
    response = client.post("/admin/feature-pricing", data=data)
    assert response.status_code == 422
    assert "already exists" in re.search(r'id="feature_key-error">([^<]*)<', text(response))[1]
    assert price_by_key("seedream_text_to_image").name == "Seedream text to image"


def test_a_taken_archived_key_suggests_restoring(client, admin, api, make_org, catalogue):
    deduct(api, make_org(), "create_visual_post")
    pricing.delete_feature(catalogue["post"].id, user_id=None)
    response = client.post(
        "/admin/feature-pricing", data={**VALID, "feature_key": "create_visual_post"}
    )
    assert response.status_code == 422 and "restore it instead" in text(response)


# --- inline edit -----------------------------------------------------------------------------


def test_htmx_edit_returns_the_edit_row(client, admin, catalogue):
    price = catalogue["image"]
    response = client.get(f"/admin/feature-pricing/{price.id}/edit", headers=HTMX)
    html = text(response)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith(f'<tr id="price-{price.id}" class="editing"')
    assert f'hx-post="/admin/feature-pricing/{price.id}"' in html
    assert 'value="5"' in html and 'name="csrf_token"' in html
    assert f'form="edit-{price.id}"' in html  # inputs belong to the row's form


def test_htmx_save_returns_the_row_and_records_old_and_new(client, admin, catalogue):
    price = catalogue["image"]
    data = {
        "name": "SeeDream image",
        "category": "Image Generation",
        "credits": "7.5",
        "unit": "image",
        "description": "",
        "active": "y",
    }
    response = client.post(f"/admin/feature-pricing/{price.id}", data=data, headers=HTMX)
    html = text(response)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith(f'<tr id="price-{price.id}" data-key="seedream_text_to_image"')
    assert "SeeDream image" in html and "7.5" in html and "editing" not in html
    price = price_by_key("seedream_text_to_image")
    assert price.credits_per_unit == credits("7.5") and price.unit == "image"
    change = changes_of("seedream_text_to_image")[-1]
    assert change.action == "updated" and change.user_id == admin.id
    assert change.changes == {
        "name": ["Seedream text to image", "SeeDream image"],
        "credits_per_unit": [credits(5), credits("7.5")],
        "unit": ["call", "image"],
    }
    # No flash is queued by an htmx save (it would pop up on some later page).
    assert "Saved" not in text(client.get("/admin/feature-pricing"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("credits", "-3", "The amount must not be negative."),
        ("credits", "1.1234567", "at most 6 decimal places"),
        ("credits", "", "Enter the price"),
        ("name", "", "Is required"),
        ("unit", "", "Is required"),
    ],
)
def test_htmx_save_with_errors_returns_the_edit_row_422(
    client, admin, catalogue, field, value, message
):
    price = catalogue["image"]
    data = {"name": "X", "category": "C", "credits": "1", "unit": "call", field: value}
    response = client.post(f"/admin/feature-pricing/{price.id}", data=data, headers=HTMX)
    html = text(response)
    assert response.status_code == 422 and "<html" not in html
    assert 'class="editing"' in html
    error = re.search(rf'id="edit-{price.id}-{field}-error">([^<]*)<', html)
    assert error and message in error.group(1)
    assert price_by_key("seedream_text_to_image").credits_per_unit == credits(5)
    assert [c.action for c in changes_of("seedream_text_to_image")] == ["created"]


def test_unchanged_save_records_nothing(client, admin, catalogue):
    price = catalogue["post"]
    data = {
        "name": price.name,
        "category": price.category,
        "credits": "2.000000",
        "unit": "call",
        "description": "",
        "active": "y",
    }
    assert (
        client.post(f"/admin/feature-pricing/{price.id}", data=data, headers=HTMX).status_code
        == 200
    )
    assert [c.action for c in changes_of("create_visual_post")] == ["created"]


def test_cancel_swaps_the_row_back(client, admin, catalogue):
    price = catalogue["video"]
    html = text(client.get(f"/admin/feature-pricing/{price.id}/row", headers=HTMX))
    assert html.lstrip().startswith(f'<tr id="price-{price.id}"') and "editing" not in html
    plain = client.get(f"/admin/feature-pricing/{price.id}/row")
    assert plain.status_code == 302 and plain.headers["Location"].endswith(f"#price-{price.id}")


def test_edit_without_javascript(client, admin, catalogue):
    price = catalogue["video"]
    page = client.get(f"/admin/feature-pricing/{price.id}/edit")
    assert (
        page.status_code == 200
        and "<html" in text(page)
        and "Edit Kling image to video" in text(page)
    )
    bad = client.post(
        f"/admin/feature-pricing/{price.id}",
        data={"name": "", "category": "V", "credits": "1", "unit": "call"},
    )
    assert bad.status_code == 422 and "<html" in text(bad) and 'id="name-error"' in text(bad)
    data = {"name": "Kling", "category": "Video Generation", "credits": "12", "unit": "call"}
    saved = client.post(f"/admin/feature-pricing/{price.id}", data=data)
    assert saved.status_code == 302 and saved.headers["Location"].endswith(f"#price-{price.id}")
    assert "Saved kling_image_to_video." in text(client.get(saved.headers["Location"]))
    price = price_by_key("kling_image_to_video")
    assert price.credits_per_unit == credits(12) and price.active is False  # box unticked


def test_unknown_feature_is_404(client, admin):
    assert client.get("/admin/feature-pricing/999/edit").status_code == 404
    assert client.post("/admin/feature-pricing/999", data=VALID).status_code == 404
    assert client.post("/admin/feature-pricing/999/delete").status_code == 404


# --- activate, deactivate, delete, restore ---------------------------------------------------


def test_deactivate_and_activate_plain_forms(client, admin, api, make_org, catalogue):
    price, org = catalogue["image"], make_org()
    response = client.post(f"/admin/feature-pricing/{price.id}/deactivate")
    assert response.status_code == 302
    assert "is now inactive" in text(client.get(response.headers["Location"]))
    assert deduct(api, org, "seedream_text_to_image").status_code == 404
    assert client.post(f"/admin/feature-pricing/{price.id}/activate").status_code == 302
    assert deduct(api, org, "seedream_text_to_image").status_code == 201
    actions = [c.action for c in changes_of("seedream_text_to_image")]
    assert actions == ["created", "deactivated", "activated"]
    assert changes_of("seedream_text_to_image")[1].changes == {"active": [True, False]}


def test_deactivate_with_htmx_returns_the_row(client, admin, catalogue):
    price = catalogue["image"]
    html = text(client.post(f"/admin/feature-pricing/{price.id}/deactivate", headers=HTMX))
    assert html.lstrip().startswith(f'<tr id="price-{price.id}"')
    assert "badge-inactive" in html and ">Activate<" in html


def test_delete_unused_feature_deletes_it(client, admin, catalogue):
    price = catalogue["video"]
    response = client.post(f"/admin/feature-pricing/{price.id}/delete")
    assert response.status_code == 302
    assert "Deleted kling_image_to_video: it had never been used." in text(
        client.get(response.headers["Location"])
    )
    assert price_by_key("kling_image_to_video") is None
    created, deleted = changes_of("kling_image_to_video")
    assert deleted.action == "deleted" and deleted.user_id == admin.id
    assert created.feature_price_id is None and deleted.feature_price_id is None
    assert deleted.changes["credits_per_unit"] == [credits(10), None]
    # Its history survives, found by key.
    history = text(client.get("/admin/feature-pricing/history/kling_image_to_video"))
    assert "deleted" in history and "created" in history


def test_delete_used_feature_archives_it(client, admin, api, make_org, catalogue):
    org = make_org()
    deduction = deduct(api, org, "seedream_text_to_image").json
    price = catalogue["image"]
    response = client.post(f"/admin/feature-pricing/{price.id}/delete")
    assert response.status_code == 302 and "status=archived" in response.headers["Location"]
    page = text(client.get(response.headers["Location"]))
    assert "Archived seedream_text_to_image instead of deleting it" in page
    price = price_by_key("seedream_text_to_image")
    assert price.archived_at is not None and price.active is False
    assert db.session.get(LedgerEntry, deduction["deduction_id"]).feature_key == price.feature_key
    assert changes_of("seedream_text_to_image")[-1].changes == {
        "archived": [False, True],
        "active": [True, False],
    }
    assert deduct(api, org, "seedream_text_to_image").status_code == 404
    # Archived rows offer restore, not edit or delete; editing is refused.
    assert client.get(f"/admin/feature-pricing/{price.id}/edit").status_code == 409
    assert client.post(f"/admin/feature-pricing/{price.id}/activate").status_code == 409


def test_a_held_feature_counts_as_used(client, admin, api, make_org, catalogue):
    org = make_org()
    hold = api.post("/credits/reservations", org, json={"feature_key": "kling_image_to_video"})
    assert hold.status_code == 201, hold.json
    client.post(f"/admin/feature-pricing/{catalogue['video'].id}/delete")
    assert price_by_key("kling_image_to_video").archived_at is not None
    api.post(f"/credits/reservations/{hold.json['reservation_id']}/release", org)


def test_restore_an_archived_feature(client, admin, api, make_org, catalogue):
    deduct(api, make_org(), "create_visual_post")
    price = catalogue["post"]
    pricing.delete_feature(price.id, user_id=None)
    response = client.post(f"/admin/feature-pricing/{price.id}/restore")
    assert response.status_code == 302
    assert "Restored create_visual_post" in text(client.get(response.headers["Location"]))
    price = price_by_key("create_visual_post")
    assert price.archived_at is None and price.active is False
    assert changes_of("create_visual_post")[-1].action == "restored"


# --- history ---------------------------------------------------------------------------------


def test_history_shows_who_when_action_and_old_to_new(client, admin, catalogue):
    price = catalogue["image"]
    data = {
        "name": price.name,
        "category": price.category,
        "credits": "7.25",
        "unit": "call",
        "active": "y",
    }
    client.post(f"/admin/feature-pricing/{price.id}", data=data)
    html = text(client.get("/admin/feature-pricing/history"))
    rows = re.findall(r"<tr>\s*<td class=\"nowrap\">.*?</tr>", html, re.S)
    assert len(rows) == 4  # three created by the CLI helper, one update by the admin
    newest = rows[0]
    assert "root@example.com" in newest and "badge-change-updated" in newest
    arrow = '<span aria-label="changed to">→</span>'
    assert re.search(
        rf'Credits / unit</span>\s*<span class="credits">5</span> {arrow} '
        r'<span class="credits">7.25</span>',
        newest,
    )
    assert "<time datetime=" in newest
    assert "CLI / system" in rows[-1]


def test_history_of_one_feature(client, admin, catalogue):
    pricing.set_active(catalogue["video"].id, False, user_id=admin.id)
    html = text(client.get("/admin/feature-pricing/history/kling_image_to_video"))
    assert "History of" in html and "deactivated" in html
    assert "seedream_text_to_image" not in html
    assert "No changes yet" in text(client.get("/admin/feature-pricing/history/no_such_key"))


def test_history_pages(client, admin, make_price):
    for step in range(1, 56):
        make_price("busy_feature", step)
    first = text(client.get("/admin/feature-pricing/history"))
    assert first.count('<td class="nowrap">') == 50
    older = re.search(r'href="(/admin/feature-pricing/history\?before=\d+)"', first)[1]
    second = text(client.get(older))
    assert second.count('<td class="nowrap">') == 5 and "← Newest" in second


def test_cli_pricing_set_still_works_and_is_recorded(runner, app):
    result = runner.invoke(args=["pricing", "set", "cli_feature", "--credits", "1.5"])
    assert result.exit_code == 0, result.output
    assert "cli_feature: 1.5 credits per call (active)" in result.output
    result = runner.invoke(args=["pricing", "set", "cli_feature", "--credits", "2", "--inactive"])
    assert result.exit_code == 0 and "(inactive)" in result.output
    created, updated = changes_of("cli_feature")
    assert created.action == "created" and created.user_id is None
    assert updated.changes == {
        "credits_per_unit": [credits("1.5"), credits(2)],
        "active": [True, False],
    }
    bad = runner.invoke(args=["pricing", "set", "Bad-Key", "--credits", "1"])
    assert bad.exit_code != 0 and "lowercase_with_underscores" in bad.output


# --- access and CSRF -------------------------------------------------------------------------

PAGES = [
    "/admin",
    "/admin/feature-pricing",
    "/admin/feature-pricing/history",
    "/admin/feature-pricing/history/x",
    "/admin/feature-pricing/{id}/edit",
    "/admin/feature-pricing/{id}/row",
]
ACTIONS = [
    "/admin/feature-pricing",
    "/admin/feature-pricing/{id}",
    "/admin/feature-pricing/{id}/activate",
    "/admin/feature-pricing/{id}/deactivate",
    "/admin/feature-pricing/{id}/delete",
    "/admin/feature-pricing/{id}/restore",
]


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_non_admins_are_turned_away_and_change_nothing(client, web, make_org, catalogue, who):
    """Anonymous browsers are sent to log in; a signed-in member gets a 403 page (logging in
    again would not help)."""
    if who == "member":
        web.login_member(make_org().id)
    price = catalogue["image"]
    for path in PAGES:
        response = client.get(path.format(id=price.id))
        if who == "member":
            assert response.status_code == 403, path
            continue
        assert response.status_code == 302, path
        assert "/login?next=" in response.headers["Location"], path
    for path in ACTIONS:
        response = client.post(path.format(id=price.id), data=VALID, headers=HTMX)
        plain = client.post(path.format(id=price.id), data=VALID)
        if who == "member":
            assert response.status_code == 403 and plain.status_code == 403, path
            continue
        # htmx is told to navigate (HX-Redirect) instead of swapping the login page into a row.
        assert response.status_code == 204, path
        assert response.headers["HX-Redirect"].startswith("/login?next="), path
        assert plain.status_code == 302 and "/login" in plain.headers["Location"], path
    assert price_by_key("seedream_text_to_image").active is True
    assert price_by_key("ocr_page") is None
    assert len(changes_of("seedream_text_to_image")) == 1


def test_admin_nav_link_only_for_admins(client, web, make_org):
    web.login_member(make_org().id)
    assert "/admin/feature-pricing" not in text(client.get("/dashboard"))


@pytest.mark.csrf
def test_form_posts_without_a_csrf_token_are_refused(client, web, catalogue):
    web.login_admin()
    refused = client.post("/admin/feature-pricing", data=VALID)
    assert refused.status_code == 400
    price = catalogue["image"]
    assert client.post(f"/admin/feature-pricing/{price.id}/deactivate").status_code == 400
    assert client.post(f"/admin/feature-pricing/{price.id}/delete").status_code == 400
    assert price_by_key("ocr_page") is None and price_by_key("seedream_text_to_image").active

    token = csrf_token(text(client.get("/admin/feature-pricing")))
    assert (
        client.post("/admin/feature-pricing", data={**VALID, "csrf_token": token}).status_code
        == 302
    )
    # htmx sends the token as a header (static/app.js), like the inline edit does.
    row = client.post(
        f"/admin/feature-pricing/{price.id}/deactivate", headers={**HTMX, "X-CSRFToken": token}
    )
    assert row.status_code == 200 and "badge-inactive" in text(row)
