"""Who may see what: the current organization and the role checks views declare."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import flash, g, make_response, redirect, request, session, url_for
from flask_login import current_user

from portal.auth.models import Membership, User
from portal.auth.service import user_for_login_id
from portal.errors import Forbidden, Unauthorized, wants_json
from portal.extensions import login_manager

SESSION_ORG_KEY = "organization_id"


@login_manager.user_loader
def load_user(login_id: str) -> User | None:
    """Sessions and remember-me cookies carry ``id:version:nonce``; a stale version is refused."""
    return user_for_login_id(login_id)


def current_account() -> User:
    """The signed-in user itself, not the ``current_user`` proxy: services keep and refresh
    it, and ``login_user`` must never be handed the proxy of itself."""
    return current_user._get_current_object()  # type: ignore[attr-defined]


def current_membership() -> Membership | None:
    """The membership of the organization the user is working in (remembered per session).

    Computed once per request. The cache is tied to the request object, not only to ``g``:
    when an app context outlives one request (tests push one for their whole body), a second
    request must not inherit the first one's user.
    """
    current_request = request._get_current_object()  # type: ignore[attr-defined]
    if g.get("membership_request") is current_request:
        return g.membership
    membership = None
    if current_user.is_authenticated:
        memberships = {m.organization_id: m for m in current_user.memberships}
        membership = memberships.get(session.get(SESSION_ORG_KEY))
        if membership is None and memberships:
            membership = min(memberships.values(), key=lambda m: m.id)
            session[SESSION_ORG_KEY] = membership.organization_id
    g.membership = membership
    g.membership_request = current_request
    return membership


def _login_redirect() -> Any:
    """To the login page; an htmx request is told to navigate, so that the login page is not
    swapped into the middle of the page (a table row, a chart card)."""
    target = url_for("auth.login", next=_return_path())
    if request.headers.get("HX-Request"):
        response = make_response("", 204)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def _return_path() -> str:
    if request.headers.get("HX-Request") and request.headers.get("HX-Current-URL"):
        current = urlsplit(request.headers["HX-Current-URL"])
        return current.path + (f"?{current.query}" if current.query else "")
    return request.full_path.rstrip("?")


def _to_login() -> Any:
    if wants_json():
        raise Unauthorized("Sign in first.")
    return _login_redirect()


def member_required(view: Callable) -> Callable:
    """Signed in and a member of an organization; exposes ``g.membership``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return _to_login()
        if current_membership() is None:
            if current_user.is_admin:
                return redirect(url_for("admin.organizations"))
            raise Forbidden("Your account is not a member of any organization yet.")
        return view(*args, **kwargs)

    return wrapper


def manager_required(view: Callable) -> Callable:
    """Owners and admins manage API keys, departments, members and billing."""

    @wraps(view)
    @member_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not g.membership.can_manage:
            raise Forbidden("Only owners and admins of this organization can do that.")
        return view(*args, **kwargs)

    return wrapper


def platform_admin_required(view: Callable) -> Callable:
    """Platform admins only: anonymous browsers go to the login page; a signed-in non-admin
    gets a 403 page (a login form would suggest signing in again helps); JSON gets 401/403."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user.is_authenticated and current_user.is_admin:
            return view(*args, **kwargs)
        if current_user.is_authenticated:
            raise Forbidden("That page is for platform admins; your account is not one.")
        if wants_json():
            raise Unauthorized("Sign in as a platform admin.")
        flash("That page is for platform admins. Sign in with an admin account.", "error")
        return _login_redirect()

    return wrapper
