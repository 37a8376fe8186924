"""No inline scripts, handlers or styles: confirmations are data attributes read by app.js."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from portal.credits.apikeys import create_api_key
from portal.credits.models import FeaturePrice
from portal.extensions import db
from tests.html_scan import confirmations, inline_code

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
# In template source: an event handler, an htmx inline handler, a javascript: URL, a
# <script> without src, a <style> block or a style attribute.
INLINE_SOURCE = re.compile(
    r"\son[a-z]+\s*=|\shx-on|javascript:|<script(?![^>]*\ssrc=)[^>]*>|<style|\sstyle\s*="
)
HOSTILE_KEY_NAME = "x'+alert(1)+'\"<b>"
HOSTILE_EMAIL = "o'hara@example.com"


# Emails are not served under the CSP, and mail clients ignore stylesheets: inline styles
# are how an email is styled at all.
PAGE_TEMPLATES = sorted(p for p in TEMPLATES.rglob("*.html") if p.parent.name != "email")


@pytest.mark.parametrize("template", PAGE_TEMPLATES, ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_template_holds_inline_code(template: Path):
    assert INLINE_SOURCE.findall(template.read_text()) == []


@pytest.fixture
def owner(make_org, make_user, auth):
    org = make_org(slug="acme")
    make_user("owner@example.com", org=org, role="owner")
    make_user(HOSTILE_EMAIL, org=org, role="member")
    auth.login("owner@example.com")
    return org


def test_api_key_revoke_confirmation_is_an_escaped_data_attribute(client, owner):
    create_api_key(owner.id, HOSTILE_KEY_NAME)
    html = client.get("/settings/api-keys").get_data(as_text=True)
    assert inline_code(html) == []
    assert f"Revoke {HOSTILE_KEY_NAME}? Apps using it will stop working." in confirmations(html)
    assert HOSTILE_KEY_NAME not in html  # only ever as escaped text


def test_member_removal_confirmation_is_an_escaped_data_attribute(client, owner):
    html = client.get("/settings/members").get_data(as_text=True)
    assert inline_code(html) == []
    assert f"Remove {HOSTILE_EMAIL}?" in confirmations(html)
    assert f"'{HOSTILE_EMAIL}" not in html and "o&#39;hara@example.com" in html


def test_price_delete_confirmation_is_a_data_attribute(client, make_price, make_user, auth):
    make_price("seedream_text_to_image")
    make_user("root@example.com", admin=True)
    auth.login("root@example.com")
    price = db.session.scalar(select(FeaturePrice))
    html = client.get("/admin/feature-pricing").get_data(as_text=True)
    assert inline_code(html) == []
    expected = f"Delete {price.feature_key}? If it was ever used it is archived instead."
    assert expected in confirmations(html)


def test_htmx_is_configured_for_the_csp(client):
    html = client.get("/login").get_data(as_text=True)
    assert (
        '<meta name="htmx-config" content=\'{"includeIndicatorStyles": false, '
        '"allowEval": false, "allowScriptTags": false}\'>'
    ) in html
    assert inline_code(html) == []
