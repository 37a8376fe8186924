"""Browser-session helpers for page tests: make users, log in through ``/login``, read tokens.

Test modules wrap ``Web`` in their own small fixtures (``web``, ``admin``), so these helpers
never collide with the shared fixtures in ``conftest.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask.testing import FlaskClient

from portal.auth import service as people
from portal.auth.models import User

PASSWORD = "correct horse 9"
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(html: str) -> str:
    """The first form token on a page (every form of one session shares it)."""
    match = CSRF_INPUT.search(html)
    assert match, "no csrf_token on the page"
    return match.group(1)


@dataclass
class Web:
    client: FlaskClient

    def user(
        self,
        email: str,
        *,
        admin: bool = False,
        organization_id: int | None = None,
        role: str = "member",
    ) -> User:
        user = people.create_user(email, PASSWORD, is_admin=admin)
        if organization_id is not None:
            people.add_membership(user, organization_id, role)
        return user

    def login(self, email: str, password: str = PASSWORD) -> None:
        """Log in as a browser does; fetches the form token first when CSRF is on."""
        data = {"email": email, "password": password}
        if self.client.application.config.get("WTF_CSRF_ENABLED", True):
            data["csrf_token"] = csrf_token(self.client.get("/login").get_data(as_text=True))
        response = self.client.post("/login", data=data)
        assert response.status_code == 302, response.get_data(as_text=True)

    def login_admin(self, email: str = "root@example.com") -> User:
        user = self.user(email, admin=True)
        self.login(email)
        return user

    def login_member(self, organization_id: int, email: str = "member@example.com") -> User:
        user = self.user(email, organization_id=organization_id, role="owner")
        self.login(email)
        return user

    def logout(self) -> None:
        self.client.post("/logout")
