"""Schemathesis against a live portal: gunicorn on PostgreSQL, every check, zero failures.

The run is bounded (examples per operation and a time budget) so that it takes about two
minutes on two cores, and paced well under the per-key rate limit (6,000 a minute). The
seeded organization holds a trillion credits, so deducts never run dry; the catalogue is the
one the client tests use (tests/live.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL, require_postgres
from tests.live import (
    ROOT,
    LivePortal,
    Seeder,
    create_postgres_database,
    drop_postgres_database,
    start_portal,
)

ST = Path(sys.executable).with_name("st")
MAX_EXAMPLES = int(os.environ.get("PORTAL_SCHEMATHESIS_EXAMPLES", "40"))
MAX_TIME = int(os.environ.get("PORTAL_SCHEMATHESIS_SECONDS", "150"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LivePortal, str]]:
    require_postgres()
    workdir = tmp_path_factory.mktemp("schemathesis")
    database_url = create_postgres_database(PG_ADMIN_URL, prefix="portal_schemathesis")
    seeder = Seeder(database_url)
    portal = None
    try:
        seeder.catalogue()
        key = seeder.org(credits=10**12).api_key
        # Webhook endpoints may be any address here: which hosts are private is policy that
        # no schema can spell (tests/test_webhooks_api.py covers those refusals).
        portal = start_portal(
            "postgresql",
            database_url,
            workdir / "gunicorn.log",
            threads=4,
            env={"PORTAL_WEBHOOKS_ALLOW_PRIVATE": "1"},
        )
        yield portal, key
    finally:
        if portal is not None:
            portal.stop()
        seeder.close()
        drop_postgres_database(PG_ADMIN_URL, database_url)


# The API key goes to the document's security scheme (not a blanket header), so schemathesis
# can also send requests without it and expect 401. A 402 (out of credits, over a
# department's monthly limit) answers a valid request the current state refuses, as 404 and
# 409 do, which positive_data_acceptance allows by default; every other check is as shipped.
CONFIG = """
[auth.openapi.apiKey]
bearer = "${PORTAL_SCHEMATHESIS_KEY}"

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "402", "403", "404", "409", "429", "5xx"]
"""


def schemathesis_command(url: str, config: Path, report_dir: Path) -> list[str]:
    return [
        str(ST),
        "--config-file",
        str(config),
        "run",
        f"{url}/api/v1/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(MAX_TIME),
        "--seed",
        os.environ.get("PORTAL_SCHEMATHESIS_SEED", "8"),
        "--rate-limit",
        "3000/m",  # half the per-key limit (6,000 a minute)
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--no-color",
        "--report-dir",
        str(report_dir),
    ]


def test_schemathesis_finds_nothing(live, tmp_path):
    portal, key = live
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    env = {
        **os.environ,
        "PORTAL_SCHEMATHESIS_KEY": key,
        "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        schemathesis_command(portal.url, config, tmp_path),
        capture_output=True,
        text=True,
        timeout=MAX_TIME + 120,
        cwd=tmp_path,  # its example cache lands there, not in the repository
        env=env,
    )
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert result.returncode == 0, output[-20_000:] + "\n--- gunicorn ---\n" + portal.log_tail()
