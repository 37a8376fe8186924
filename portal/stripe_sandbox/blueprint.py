"""The ``stripe_sandbox`` blueprint and what its views share: key checks, one commit, Stripe errors.

The blueprint is exempt from the portal's CSRF protection (it is another "service" with its
own callers), so the hosted pages defend their POSTs themselves: ids in their URLs are long
random capabilities, and a browser POST from another origin is refused (``Sec-Fetch-Site`` /
``Origin``), which is what a CSRF token would buy without making scripted checkouts carry one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, request
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.stripe_sandbox import display, events, idempotency, store, worker
from portal.stripe_sandbox.errors import SandboxError
from portal.stripe_sandbox.params import Params, decode

bp = Blueprint("stripe_sandbox", __name__, url_prefix="/_stripe")

LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")
TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")


@bp.before_app_request
def start_delivery_worker() -> None:
    worker.ensure_started(current_app._get_current_object())  # type: ignore[attr-defined]


@bp.context_processor
def hosted_page_helpers() -> dict[str, Any]:
    return {
        "amount": display.format_amount,
        "interval_text": display.interval_text,
        "date": display.format_date,
        "account_name": current_app.config.get("STRIPE_SANDBOX_ACCOUNT_NAME", "Credits portal"),
    }


def error_response(error: SandboxError) -> Response:
    response = Response(
        current_app.json.dumps(error.to_dict()), error.status, mimetype="application/json"
    )
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="Stripe"'
    return response


def _api_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    if request.authorization and request.authorization.type == "basic":
        return request.authorization.username  # curl -u sk_test_…:
    return None


def authenticate() -> None:
    key = _api_key()
    if not key:
        raise SandboxError(
            "You did not provide an API key (Authorization: Bearer sk_test_…).",
            status=401,
        )
    if key.startswith(LIVE_KEY_PREFIXES):
        raise SandboxError(
            "The offline Stripe sandbox refuses live keys: it only ever plays test mode.",
            status=401,
        )
    if not key.startswith(TEST_KEY_PREFIXES):
        raise SandboxError(f"Invalid API Key provided: {key[:8]}…", status=401)


def request_pairs() -> list[tuple[str, str]]:
    source = request.form if request.method == "POST" else request.args
    return list(source.items(multi=True))


def api_view(view: Callable[..., dict[str, Any]]) -> Callable[..., Response]:
    """Authenticate, run the view with its decoded ``Params``, commit once, answer JSON.

    The view only changes the session; this wrapper owns the transaction, so an error at any
    point (a declined card, an unknown id) leaves nothing behind, and an ``Idempotency-Key``
    answer is stored in the same commit as the work it describes.
    """

    @wraps(view)
    def wrapper(**kwargs: Any) -> Response:
        pairs = request_pairs()
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        fingerprint = idempotency.fingerprint(request.method, request.path, pairs)
        try:
            authenticate()
            if key and (replayed := idempotency.replay(key, fingerprint)):
                return replayed
            body = current_app.json.dumps(view(Params(decode(pairs)), **kwargs))
            store.remember_api_host(request.host_url)
            if key:
                idempotency.remember(key, fingerprint, 200, body)
            events.commit()
        except SandboxError as error:
            db.session.rollback()
            return error_response(error)
        except IntegrityError:
            # Another request with the same key committed first: answer as it did.
            db.session.rollback()
            if key and (replayed := idempotency.replay(key, fingerprint)):
                return replayed
            raise
        return Response(body, 200, mimetype="application/json")

    return wrapper


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def refuse_cross_site_post() -> None:
    """Hosted forms accept POSTs from their own pages (or from scripts), never from other sites."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site not in ("same-origin", "none"):
            abort(403, "Cross-site form posts are refused.")
        return
    origin = request.headers.get("Origin")
    allowed = {_origin(request.host_url)}
    if current_app.config.get("PORTAL_BASE_URL"):
        allowed.add(_origin(current_app.config["PORTAL_BASE_URL"]))
    if origin is not None and origin not in allowed:
        abort(403, "Cross-site form posts are refused.")
