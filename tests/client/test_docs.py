"""The docs cannot rot: every example runs against what ``make run`` serves, and says so.

A portal is set up exactly as ``make run`` does it (``flask db upgrade``, then ``flask demo``,
as commands, into an empty database of its own) and served by gunicorn. Then:

- every ``python`` block of README.md and docs/integration.md runs, in document order, in a
  fresh namespace, with the demo API key that ``flask demo`` printed: what it prints must match
  its ``# -> ...`` comments, and afterwards the demo's books balance with no credits held;
- the README's curl block runs with bash (each command must succeed; ids come from the
  previous command's output, so the refund refunds the charge just made, never a demo row).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from portal.client import reset_default
from tests.client.conftest import assert_books_balance, make_client
from tests.conftest import BACKENDS, PG_ADMIN_URL, require_postgres
from tests.live import (
    ROOT,
    LivePortal,
    create_postgres_database,
    drop_postgres_database,
    start_portal,
)

DOCS = (ROOT / "docs" / "integration.md", ROOT / "README.md")
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.DOTALL | re.MULTILINE)
EXPECTED = re.compile(r"#\s*->\s*(.*?)\s*$", re.MULTILINE)
PATTERNS = (
    "Pattern 1: a simple decorator",
    "Pattern 2: manual control",
    "Pattern 3: batches",
    "Pattern 4: AI calls priced by tokens",
    "A streamed AI call",
    "Pattern 5: a Celery-style background task",
)
FLASK = [sys.executable, "-m", "flask", "--app", "wsgi"]


def examples() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for index, match in enumerate(BLOCK.finditer(path.read_text()), start=1):
            found.append((f"{path.name}#{index}", match.group(1)))
    return found


EXAMPLES = examples()


@dataclass
class DemoPortal:
    portal: LivePortal
    api_key: str
    output: str  # what ``flask demo`` printed


def make_run_steps(database_url: str, workdir: Path) -> str:
    """``make run`` without its last step: migrate, load the demo; ``flask demo``'s output."""
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    for command in (["db", "upgrade"], ["demo"]):
        done = subprocess.run(
            [*FLASK, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"flask {' '.join(command)}:\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module", params=BACKENDS)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoPortal]:
    backend = request.param
    workdir = tmp_path_factory.mktemp(f"demo-{backend}")
    if backend == "sqlite":
        database_url = f"sqlite:///{workdir / 'portal.sqlite3'}"
    else:
        require_postgres()
        # Empty: ``flask db upgrade`` builds it, as ``make run`` does.
        database_url = create_postgres_database(PG_ADMIN_URL, "portal_demo", migrated=False)
    try:
        output = make_run_steps(database_url, workdir)
        keys = [line for line in output.splitlines() if line.startswith("cpk_")]
        assert len(keys) == 1, output
        portal = start_portal(backend, database_url, workdir / "gunicorn.log")
        try:
            yield DemoPortal(portal, keys[0], output)
        finally:
            portal.stop()
    finally:
        if backend == "postgresql":
            drop_postgres_database(PG_ADMIN_URL, database_url)


def test_the_docs_cover_every_pattern_with_examples() -> None:
    guide = DOCS[0].read_text()
    sections = re.split(r"^##+ ", guide, flags=re.MULTILINE)  # headings, not code comments
    for title in PATTERNS:
        (section,) = [s for s in sections if s.startswith(title)]
        assert BLOCK.search(section), f"no runnable example under {title!r}"
    assert len(EXAMPLES) >= 12


def test_the_docs_prices_are_the_demo_prices(demo: DemoPortal) -> None:
    """The table the guide's outputs are computed from is the catalogue ``flask demo`` loads."""
    table = re.findall(r"^\| `(\w+)` \| ([\d.]+) \|", DOCS[0].read_text(), re.MULTILINE)
    assert len(table) >= 7
    with make_client(demo.portal.url, demo.api_key) as reader:
        for feature_key, credits in table:
            assert str(reader.pricing(feature_key).credits) == credits, feature_key


@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_runs_on_the_demo_data_and_prints_what_it_says(
    name: str,
    code: str,
    demo: DemoPortal,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CREDITS_PORTAL_URL", demo.portal.url)
    monkeypatch.setenv("CREDITS_API_KEY", demo.api_key)
    expected = EXPECTED.findall(code)
    assert expected, f"{name} shows no output to check"
    with make_client(demo.portal.url, demo.api_key) as reader:
        assert reader.balance().organization == "demo"

    try:
        exec(compile(code, name, "exec"), {"__name__": f"docs_example_{name}"})
    finally:
        reset_default()

    assert capsys.readouterr().out.splitlines() == expected
    with make_client(demo.portal.url, demo.api_key) as reader:
        assert_books_balance(reader)
        assert reader.balance().reserved == 0


def readme_curl_block() -> str:
    (block,) = [b for b in BASH_BLOCK.findall(DOCS[1].read_text()) if "$API/balance" in b]
    return block


def test_readme_curl_examples_run_on_the_demo_data(demo: DemoPortal) -> None:
    block = readme_curl_block()
    assert re.search(r"^KEY=cpk_", block, re.MULTILINE) and re.search(r"^API=", block, re.M)
    # A literal id would refund (or capture) a real demo row: ids come from earlier answers.
    commands = "\n".join(line for line in block.splitlines() if not line.startswith("#"))
    assert not re.search(r'deduction_id\\?":\s*\d|reservations/\d', commands)
    body = "\n".join(line for line in block.splitlines() if not line.startswith(("KEY=", "API=")))
    script = "\n".join(
        [
            "set -euo pipefail",
            f"KEY={demo.api_key}",
            f"API={demo.portal.url}/api/v1",
            # Every command must succeed: an HTTP error fails it (and, with -e, the script).
            'curl() { command curl --fail-with-body --max-time 10 "$@"; echo; }',
            body,
        ]
    )
    with make_client(demo.portal.url, demo.api_key) as reader:
        newest_before = next(iter(reader.transactions(page_size=1))).id
    path = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run(
        [bash, "-c", script], capture_output=True, text=True, timeout=120, env=path
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

    refunded = re.search(
        r'"refund_id":\d+,"deduction_id":(\d+),"credits_refunded":5\b', done.stdout
    )
    assert refunded, done.stdout
    assert int(refunded.group(1)) > newest_before  # the charge the block made, not a demo row
    assert '"credits_deducted":6,"credits_released":9' in done.stdout
    assert '"credits_deducted":0.008085' in done.stdout
    with make_client(demo.portal.url, demo.api_key) as reader:
        assert_books_balance(reader)
