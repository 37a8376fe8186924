"""Save PNG screenshots of the main pages at desktop and phone widths, for review.

    python -m tests.e2e.screenshots [--out screenshots]

Runs a throw-away demo portal (SQLite + ``flask demo``) and logs in as the demo owner and the
demo admin. Needs Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from portal.demo import DEMO_LOGINS
from tests.e2e.browser import chromium, demo_portal

VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
OWNER_PAGES = [
    ("dashboard", "/dashboard"),
    ("usage", "/usage"),
    ("credits", "/credits"),
    ("transactions", "/transactions"),
    ("api-keys", "/settings/api-keys"),
    ("departments", "/settings/departments"),
    ("members", "/settings/members"),
    ("webhooks", "/settings/webhooks"),
]
ADMIN_PAGES = [
    ("admin-pricing", "/admin/feature-pricing"),
    ("admin-organizations", "/admin/organizations"),
    ("admin-organization", "/admin/organizations/demo"),
]
OPTIONAL_PAGES = [("billing", "/billing"), ("error-404", "/no-such-page")]


def _login(page, base_url: str, email: str, password: str) -> None:
    page.goto(f"{base_url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def _sandbox_checkout(page, base_url: str, target: Path) -> Path:
    """Buy the first package from the billing page and shoot the sandbox's checkout page."""
    page.goto(f"{base_url}/billing")
    page.get_by_role("button", name="Buy").first.click()
    page.wait_for_url("**/_stripe/checkout/**")
    page.screenshot(path=str(target), full_page=True)
    return target


def capture(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    logins = {role or "admin": (email, pw) for email, pw, _, role in DEMO_LOGINS}
    plan = [("owner", OWNER_PAGES + OPTIONAL_PAGES), ("admin", ADMIN_PAGES)]
    saved = []
    with (
        tempfile.TemporaryDirectory() as workdir,
        demo_portal(Path(workdir)) as portal,
        chromium() as browser,
    ):
        for device, (width, height) in VIEWPORTS.items():
            for who, pages in plan:
                context = browser.new_context(viewport={"width": width, "height": height})
                page = context.new_page()
                _login(page, portal.url, *logins[who])
                for name, path in pages:
                    response = page.goto(f"{portal.url}{path}")
                    if response is None or (response.status == 404 and "error" not in name):
                        continue
                    page.wait_for_load_state("networkidle")
                    target = out / f"{name}-{device}.png"
                    page.screenshot(path=str(target), full_page=True)
                    saved.append(target)
                if who == "owner":
                    saved.append(
                        _sandbox_checkout(page, portal.url, out / f"stripe-checkout-{device}.png")
                    )
                context.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args()
    for path in capture(args.out):
        print(path)


if __name__ == "__main__":
    main()
