"""A database outage answers 503 ``service_unavailable`` with ``Retry-After``, never a 500.

The API authenticates before anything else, so the key lookup is the first query to fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from portal import create_app
from tests.conftest import assert_error
from tests.live import free_port

BEARER = {"Authorization": "Bearer cpk_00000000_anything"}


def closed_postgres_port() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/portal"


def unopenable_sqlite_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'no-such-directory' / 'portal.sqlite3'}"


@pytest.fixture(params=("postgresql-closed-port", "sqlite-unopenable-file"))
def down_app(request: pytest.FixtureRequest, tmp_path: Path) -> Flask:
    url = (
        closed_postgres_port()
        if request.param == "postgresql-closed-port"
        else unopenable_sqlite_file(tmp_path)
    )
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url})


def assert_retry_after(response: Any) -> None:
    assert 1 <= int(response.headers["Retry-After"]) <= 60


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/balance", None),
        ("POST", "/api/v1/credits/deduct", {"feature_key": "generate_content"}),
        ("GET", "/api/v1/features/pricing?key=generate_content", None),  # public: no key lookup
    ],
)
def test_api_answers_503_in_the_json_shape(
    down_app: Flask, method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = down_app.test_client().open(path, method=method, headers=BEARER, json=body)

    assert_error(response, 503, "service_unavailable")
    assert_retry_after(response)


def test_a_page_answers_a_styled_503(down_app: Flask) -> None:
    response = down_app.test_client().get("/invite/some-token")

    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert "database is unavailable" in response.get_data(as_text=True)
    assert_retry_after(response)


def test_a_signed_in_page_answers_503_when_the_database_goes_away(
    app: Flask, auth: Any, client: Any, make_user: Any, tmp_path: Path
) -> None:
    """The session cookie is good; loading its user is the query that fails."""
    make_user("ivan@example.com")
    auth.login("ivan@example.com")
    gone = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": app.config["SECRET_KEY"],
            "SQLALCHEMY_DATABASE_URI": unopenable_sqlite_file(tmp_path),
        }
    )
    browser = gone.test_client()
    browser.set_cookie("session", client.get_cookie("session").value)

    response = browser.get("/dashboard")

    assert response.status_code == 503
    assert "database is unavailable" in response.get_data(as_text=True)
    assert_retry_after(response)
