"""The integration docs cannot rot: every ``python`` block runs against the live portal.

Each block runs alone, in a fresh namespace, for a fresh organization with 100 credits; what
it prints must match its ``# -> ...`` comments, in order, and afterwards the organization's
books must balance with no credits left held.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from portal.client import reset_default
from tests.client.conftest import assert_books_balance, make_client
from tests.live import ROOT, LivePortal, Seeder

DOCS = (ROOT / "docs" / "integration.md", ROOT / "README.md")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
EXPECTED = re.compile(r"#\s*->\s*(.*?)\s*$", re.MULTILINE)
PATTERNS = (
    "Pattern 1: a simple decorator",
    "Pattern 2: manual control",
    "Pattern 3: batches",
    "Pattern 4: AI calls priced by tokens",
    "A streamed AI call",
    "Pattern 5: a Celery-style background task",
)


def examples() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for index, match in enumerate(BLOCK.finditer(path.read_text()), start=1):
            found.append((f"{path.name}#{index}", match.group(1)))
    return found


EXAMPLES = examples()


def test_the_docs_cover_every_pattern_with_examples() -> None:
    guide = DOCS[0].read_text()
    sections = re.split(r"^##+ ", guide, flags=re.MULTILINE)  # headings, not code comments
    for title in PATTERNS:
        (section,) = [s for s in sections if s.startswith(title)]
        assert BLOCK.search(section), f"no runnable example under {title!r}"
    assert len(EXAMPLES) >= 12


@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_runs_and_prints_what_it_says(
    name: str,
    code: str,
    live_portal: LivePortal,
    seeder: Seeder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    org = seeder.org(Decimal(100))
    monkeypatch.setenv("CREDITS_PORTAL_URL", live_portal.url)
    monkeypatch.setenv("CREDITS_API_KEY", org.api_key)
    expected = EXPECTED.findall(code)
    assert expected, f"{name} shows no output to check"

    try:
        exec(compile(code, name, "exec"), {"__name__": f"docs_example_{name}"})
    finally:
        reset_default()

    assert capsys.readouterr().out.splitlines() == expected
    with make_client(live_portal.url, org.api_key) as reader:
        assert_books_balance(reader)
        assert reader.balance().reserved == 0
