"""Headless Chromium (Debian's package) driven by Playwright, plus a live demo portal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.live import LivePortal, migrate, start_portal

ROOT = Path(__file__).resolve().parents[2]
FLASK = Path(sys.executable).with_name("flask")
# Without the background-networking flags Chromium keeps dialling hosts this machine cannot
# reach; the sandbox needs a user namespace that a root container does not give it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


def flask(database_url: str, *args: str) -> str:
    """Run a ``flask`` command against ``database_url``; return what it printed."""
    env = {**os.environ, "DATABASE_URL": database_url, "FLASK_APP": "wsgi"}
    done = subprocess.run(
        [str(FLASK), *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"flask {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextmanager
def demo_portal(workdir: Path, env: dict[str, str] | None = None) -> Iterator[LivePortal]:
    """A gunicorn portal on a fresh SQLite file with ``flask demo`` data."""
    database_url = f"sqlite:///{workdir / 'e2e.sqlite3'}"
    migrate(database_url)
    flask(database_url, "demo")
    portal = start_portal(
        "sqlite", database_url, workdir / "gunicorn.log", workers=2, threads=4, env=env
    )
    try:
        yield portal
    finally:
        portal.stop()


@contextmanager
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
