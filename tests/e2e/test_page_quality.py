"""Every page in real Chromium: strict CSP holds, nothing errors, phones fit, keys work.

One live demo portal and one browser for the module; each role logs in once and its
storage state is reused by every test that needs it.
"""

from __future__ import annotations

import pytest

from portal.demo import DEMO_LOGINS

pytestmark = pytest.mark.e2e
HOSTILE_NAME = "x'+alert(1)+'"


@pytest.fixture(scope="module")
def logins(browser, portal, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """role ("owner", "member", "admin") -> a storage-state file of a logged-in session."""
    folder = tmp_path_factory.mktemp("logins")
    states = {}
    for email, password, _, role in DEMO_LOGINS:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{portal.url}/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state("networkidle")
        name = role or "admin"
        context.storage_state(path=folder / f"{name}.json")
        states[name] = str(folder / f"{name}.json")
        context.close()
    return states


def test_hostile_key_name_is_asked_about_literally_and_dismissing_keeps_the_key(
    browser, portal, logins
):
    context = browser.new_context(storage_state=logins["owner"])
    page = context.new_page()
    page.goto(f"{portal.url}/settings/api-keys")
    page.get_by_label("Key name").fill(HOSTILE_NAME)
    page.get_by_role("button", name="Create key").click()
    row = page.locator("tbody tr", has_text=HOSTILE_NAME)
    dialogs = []

    def answer(dialog) -> None:
        dialogs.append((dialog.type, dialog.message))
        dialog.dismiss()

    page.on("dialog", answer)
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_timeout(300)  # a dismissed confirm sends nothing: give a wrong submit time
    assert dialogs == [("confirm", f"Revoke {HOSTILE_NAME}? Apps using it will stop working.")]
    page.goto(f"{portal.url}/settings/api-keys")
    assert "active" in page.locator("tbody tr", has_text=HOSTILE_NAME).inner_text().lower()

    page.remove_listener("dialog", answer)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tbody tr", has_text=HOSTILE_NAME).get_by_role("button", name="Revoke").click()
    page.wait_for_load_state("networkidle")
    assert "revoked" in page.locator("tbody tr", has_text=HOSTILE_NAME).inner_text().lower()
    context.close()
