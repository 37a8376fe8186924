"""Request limits through a real gunicorn (``gunicorn.conf.py`` from the repository root):
an oversized body is refused before it is sent, over-long URLs and headers answer in the JSON
shape below gunicorn's own limits, and only past those does gunicorn answer in plain text."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import LivePortal, migrate, start_portal


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePortal]:
    workdir = tmp_path_factory.mktemp("live-limits")
    database_url = f"sqlite:///{workdir / 'portal.sqlite3'}"
    migrate(database_url)
    live = start_portal("sqlite", database_url, Path(workdir) / "gunicorn.log", threads=4)
    yield live
    live.stop()


def exchange(portal: LivePortal, head: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Send ``head`` (and the first part of a body), read the whole answer."""
    host, port = portal.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    raw_headers, _, payload = rest.partition(b"\r\n\r\n")
    headers = {}
    for line in raw_headers.split(b"\r\n"):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, payload


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 1 << 30


def request_head(method: str, target: str, *headers: str) -> str:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(
    ("path", "content_type", "json_shape"),
    [
        ("/login", "application/x-www-form-urlencoded", False),
        ("/stripe/webhook", "application/json", True),
        ("/api/v1/credits/deduct", "application/json", True),
    ],
)
def test_a_declared_oversized_body_is_refused_before_it_is_sent(
    portal, path, content_type, json_shape
):
    # 300 MB declared, 64 KB sent: the answer must come without the rest of the body.
    head = request_head(
        "POST", path, f"Content-Type: {content_type}", f"Content-Length: {300 * 1024 * 1024}"
    )
    status, headers, payload = exchange(portal, head, b"x" * 65536)
    assert status == 413
    if json_shape:
        assert json.loads(payload)["error"]["code"] == "request_entity_too_large"
    else:
        assert headers["content-type"].startswith("text/html")


def test_the_webhook_refuses_what_the_api_would_take(portal):
    head = request_head(
        "POST", "/stripe/webhook", "Content-Type: application/json", "Content-Length: 300000"
    )
    status, _, payload = exchange(portal, head, b"{" + b" " * 299_998 + b"}")
    assert status == 413
    assert json.loads(payload)["error"]["code"] == "request_entity_too_large"


def test_app_limits_answer_in_json_below_gunicorns(portal):
    status, _, payload = exchange(portal, request_head("GET", "/api/v1/balance?x=" + "y" * 6000))
    assert (status, json.loads(payload)["error"]["code"]) == (414, "uri_too_long")
    status, _, payload = exchange(
        portal, request_head("GET", "/api/v1/balance", "X-Padding: " + "y" * 6000)
    )
    assert (status, json.loads(payload)["error"]["code"]) == (
        431,
        "request_header_fields_too_large",
    )
    many = [f"X-Pad-{n}: y" for n in range(80)]
    status, _, payload = exchange(portal, request_head("GET", "/api/v1/balance", *many))
    assert (status, json.loads(payload)["error"]["code"]) == (
        431,
        "request_header_fields_too_large",
    )


def test_past_gunicorns_hard_maximum_it_answers_itself(portal):
    """What remains (documented in gunicorn.conf.py): gunicorn's own plain-text answer."""
    status, headers, _ = exchange(portal, request_head("GET", "/api/v1/balance?x=" + "y" * 9000))
    assert status in (400, 414)
    assert "json" not in headers.get("content-type", "")
