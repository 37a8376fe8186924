"""``portal.client`` imports without Flask or a database stack, as other apps install it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.live import ROOT

BLOCKED = ("flask", "flask_sqlalchemy", "flask_migrate", "sqlalchemy", "psycopg", "werkzeug")

PROBE = textwrap.dedent(
    f"""
    import importlib.abc, json, sys

    BLOCKED = {BLOCKED!r}

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked in this test")
            return None

    sys.meta_path.insert(0, Refuse())
    import portal.client
    from portal.client import CreditClient, AsyncCreditClient, consume_credits, configure

    with CreditClient("http://127.0.0.1:9", "key") as client:
        pass
    print(json.dumps({{
        "exports": len(portal.client.__all__),
        "portal_modules": sorted(m for m in sys.modules if m.startswith("portal")),
    }}))
    """
)


def test_client_imports_with_flask_and_databases_blocked() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["exports"] > 40
    # Only the package root and the client itself: nothing of the app came along.
    assert {m.split(".")[1] for m in report["portal_modules"] if "." in m} == {"client"}


def test_the_probe_really_blocks() -> None:
    """The guard above proves something only if importing the app does fail under it."""
    probe = PROBE.replace("import portal.client\n", "import portal.client\nimport wsgi\n", 1)
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "is blocked in this test" in result.stderr
