"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Generated Idempotency-Key values shrink to the same few strings ("0", "00"), so two
different generated bodies would share a key, and the portal rightly answers the second
with 422 idempotency_key_reused: a conflict of state, not a schema-valid request refused.
Real clients use one fresh key per operation; so does this run. A well-formed generated key
gets a unique suffix (still 1-255 printable characters); a malformed one is sent as generated,
so the header's negative cases are still refused by the portal. Replays of one key are
tested in tests/test_api_idempotency.py.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

WELL_FORMED = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]{0,200}[\x21-\x7e])?$")


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and WELL_FORMED.match(key):
        case.headers["Idempotency-Key"] = f"{key}.{uuid.uuid4().hex}"
