"""End-to-end fixtures: one live demo portal and one headless Chromium per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import IN_CI
from tests.e2e.browser import chromium, chromium_path, demo_portal


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if chromium_path() is None:
        if IN_CI:
            pytest.fail("Chromium is required in CI (apt-get install chromium)")
        pytest.skip("Chromium is not installed")
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory, smtp_server):
    """The live portal mails through the test SMTP server (``portal_mail`` reads it)."""
    env = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_server.port)}
    with demo_portal(tmp_path_factory.mktemp("e2e"), env=env) as live:
        yield live


@pytest.fixture
def portal_mail(smtp_server):
    """The messages the live portal sent during this test."""
    smtp_server.mailbox.clear()
    return smtp_server.mailbox
