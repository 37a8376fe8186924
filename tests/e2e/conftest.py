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
def portal(tmp_path_factory: pytest.TempPathFactory):
    with demo_portal(tmp_path_factory.mktemp("e2e")) as live:
        yield live
