"""Limits against abuse: logins, sign-up-class forms and the API, counted by Flask-Limiter.

What is limited (settings in ``portal/config.py``, README "Limits"):

- ``POST /login``: per account (the submitted email, normalised and hashed) and per client
  address, ``PORTAL_LOGIN_RATE_LIMIT``. Every attempt counts, not only failures, so once the
  window is used up even the right password is refused until it passes.
- Sign-up, password-reset requests, invitation accepts (``@per_address(SIGNUP_LIMIT)``): POSTs
  per client address and page, ``PORTAL_SIGNUP_RATE_LIMIT``.
- The API: per API key, ``PORTAL_API_RATE_LIMIT``; requests with a missing or wrong key per
  client address, ``PORTAL_API_UNAUTHENTICATED_RATE_LIMIT``. Past that limit an address gets
  429 for every API request, before its key is looked up, until the window passes: a guess
  that happens to be right is refused too, so guessing is as slow as the limit. The counter is
  shared (Redis); the block is remembered per process, so each worker refuses good keys from
  that address from the first wrong key it sees there (at most one more guess per worker).
  The cost: a client behind the same NAT as a misbehaving one is refused for one window.

How: one Flask-Limiter per app (its storage, fallback and state live on the instance, and the
test suite builds hundreds of apps). Web views carry a marker from ``per_address`` /
``per_account``; ``init_app`` wraps the marked views with that app's ``limiter.limit``. The API
hook does not go through Flask-Limiter's per-route machinery: on the deduct hot path it calls
the limiter's fixed-window strategy directly, one Lua ``INCR``+``EXPIRE`` (one Redis round
trip; the address check is a dict lookup), because the decorator path costs several times
more (measured below). For large limits each process counts requests itself and sends them
in batches (``report_batch``: exact below 200 a window, one round trip per 20 requests at the
default 6000 a minute), so a key can overshoot by at most 19 requests per worker per window.
On ``memory://`` (and while Redis is down) the API counts in ``LocalWindows``, not in limits'
``MemoryStorage``: see why there.

Client address: the socket's, unless ``PORTAL_TRUSTED_PROXIES`` = N > 0, when werkzeug's
``ProxyFix`` takes the N-th address from the right of ``X-Forwarded-For`` (only ever trust as
many hops as you run: a client can prepend anything). IPv6 clients are counted per /64, the
block one host usually holds.

Storage: ``RATELIMIT_STORAGE_URI`` (default ``REDIS_URL`` when set, else ``memory://``, which
counts per process: each gunicorn worker has its own counters). If Redis stops answering,
counting falls back to per-process memory and logs a warning; it never takes the API down. A
Redis that hangs costs at most the 0.5 s socket timeouts, then ``STORAGE_RETRY_SECONDS`` of
memory counting before Redis is tried again.

Measured cost (``python -m tests.benchmarks.limiter_cost``, method in its docstring), on this
2-core VM at load average 5-10 from other work. Per API request, in process, CPU:

- this module's hook: 3.7 us on memory, 7.5-17 us on Redis (one round trip per 20 requests at
  the default limit; one round trip alone costs ~100 us of CPU here under load, 250 us wall);
- Flask-Limiter's own before/after-request hooks, which every request passes: 23-25 us;
- so about 30-40 us per API request: ~2% of a deduct through the test client on SQLite
  (1.5-1.7 ms of CPU), ~1.5% of the 2.15 ms of server CPU a deduct costs over gunicorn and
  PostgreSQL (README, Performance). Whole-deduct A/B runs on this machine are inside its noise:
  the "limits off" control app differed from "off" by -2% in one run and +24% in another.
- For comparison, the same count through a Flask-Limiter route decorator: 60-70 us memory,
  180-380 us Redis (why the API does not use one); limits' MemoryStorage: 100-450 us per
  request at a few hundred requests a second (its timer thread; why ``LocalWindows`` exists).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, WindowStats, parse_many
from limits.strategies import RateLimiter

from portal.errors import PortalError, Unauthorized

log = logging.getLogger(__name__)

LOGIN_LIMIT = "PORTAL_LOGIN_RATE_LIMIT"
SIGNUP_LIMIT = "PORTAL_SIGNUP_RATE_LIMIT"
API_LIMIT = "PORTAL_API_RATE_LIMIT"
API_UNAUTHENTICATED_LIMIT = "PORTAL_API_UNAUTHENTICATED_RATE_LIMIT"
SETTINGS = (LOGIN_LIMIT, SIGNUP_LIMIT, API_LIMIT, API_UNAUTHENTICATED_LIMIT)
# A Redis that stops answering must not hold requests: fail fast, then count in memory a while.
REDIS_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
STORAGE_RETRY_SECONDS = 10
EXTENSION = "portal.limits"
WRONG_KEYS = "Too many requests with a missing or wrong API key from your address."
MAX_BLOCKED = 10_000
MAX_WINDOWS = 100_000
MAX_BATCH = 20
_RULES = "_portal_rate_limits"

View = TypeVar("View", bound=Callable[..., Any])


class RateLimited(PortalError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(f"{message} Try again in {_wait(retry_after)}.")
        self.retry_after = retry_after


def _wait(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


def client_address() -> str:
    """The address limits count by: the socket's (or ProxyFix's), IPv6 by its /64 block."""
    address = request.remote_addr or "unknown"
    if ":" in address:
        try:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        except ValueError:
            return address
    return address


def _submitted_account(field: str) -> Callable[[], str]:
    def account() -> str:
        # Normalised like auth.service.normalize_email, hashed so Redis holds no addresses.
        email = (request.form.get(field) or "").strip().lower()
        return "account-" + hashlib.sha256(email.encode()).hexdigest()[:32]

    return account


# --- web views: markers, applied per app by init_app -------------------------------------


@dataclass(frozen=True)
class _Rule:
    setting: str
    key: Callable[[], str]
    scope: str
    message: str
    methods: tuple[str, ...]


def _mark(rule: _Rule) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        setattr(view, _RULES, (*getattr(view, _RULES, ()), rule))
        return view

    return decorate


def per_address(
    setting: str = SIGNUP_LIMIT,
    *,
    message: str = "Too many attempts from your network.",
    methods: tuple[str, ...] = ("POST",),
) -> Callable[[View], View]:
    """Limit a view's POSTs per client address to the limit in ``setting``."""
    return _mark(_Rule(setting, client_address, "address", message, methods))


def per_account(
    setting: str = LOGIN_LIMIT,
    *,
    field: str = "email",
    message: str = "Too many attempts for this account.",
    methods: tuple[str, ...] = ("POST",),
) -> Callable[[View], View]:
    """Limit a view's POSTs per account named in form field ``field``."""
    return _mark(_Rule(setting, _submitted_account(field), "account", message, methods))


def _enforce(app: Flask, limiter: Limiter, view: Callable[..., Any]) -> Callable[..., Any]:
    rules: tuple[_Rule, ...] = getattr(view, _RULES)
    limited = view
    for rule in rules:
        limited = limiter.limit(
            app.config[rule.setting],
            key_func=rule.key,
            scope=rule.scope,
            methods=list(rule.methods),
            error_message=rule.message,
        )(limited)

    @wraps(view)
    def enforced(*args: Any, **kwargs: Any) -> Any:
        try:
            return limited(*args, **kwargs)
        except RateLimitExceeded as exc:
            message = exc.description or "Too many attempts."
            raise RateLimited(message, _web_retry_after(exc)) from None

    return enforced


def _web_retry_after(exc: RateLimitExceeded) -> int:
    limiter = current_app.extensions[EXTENSION].limiter
    try:
        reset_at = limiter.current_limit.window.reset_time
    except Exception:  # the storage went away since the hit: the window's length is the bound
        return int(exc.limit.limit.get_expiry())
    return max(1, math.ceil(reset_at - time.time()))


# --- the API: a hook around its authentication ---------------------------------------------


class LocalWindows:
    """Fixed windows in this process's memory, for the API path on ``memory://`` and while
    Redis is down. The same counting as limits' ``MemoryStorage``, minus the timer thread it
    starts after every 10 ms of quiet: measured at 100-450 us of CPU per request at a few
    hundred requests a second, more than the rest of the limiter together."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._windows: dict[str, list[float]] = {}  # key -> [window end (epoch s), count]
        self._lock = threading.Lock()
        self._clock = clock

    def _window(self, item: RateLimitItem, ids: tuple[str, ...], now: float) -> list[float]:
        key = item.key_for(*ids)
        window = self._windows.get(key)
        if window is None or window[0] <= now:
            if len(self._windows) > MAX_WINDOWS:  # many keys or addresses: drop ended windows
                self._windows = {k: w for k, w in self._windows.items() if w[0] > now}
            window = self._windows[key] = [now + item.get_expiry(), 0]
        return window

    def hit(self, item: RateLimitItem, *ids: str, cost: int = 1) -> bool:
        with self._lock:
            window = self._window(item, ids, self._clock())
            window[1] += cost
            return window[1] <= item.amount

    def test(self, item: RateLimitItem, *ids: str) -> bool:
        with self._lock:
            return self._window(item, ids, self._clock())[1] < item.amount

    def get_window_stats(self, item: RateLimitItem, *ids: str) -> WindowStats:
        with self._lock:
            end, count = self._window(item, ids, self._clock())
        return WindowStats(end, max(0, item.amount - int(count)))


class Counters:
    """The API's counters: fixed windows in the limiter's storage (Redis: one round trip per
    call), or in this process (``memory://``); while Redis is unreachable, in this process too
    (logged; Redis is tried again every ``STORAGE_RETRY_SECONDS``)."""

    def __init__(self, limiter: Limiter, uri: str) -> None:
        self.limiter = limiter
        self.local = LocalWindows()
        self.in_memory = uri.startswith("memory")
        self.down_until = 0.0

    def _strategy(self) -> RateLimiter | LocalWindows:
        if self.in_memory or (self.down_until and time.monotonic() < self.down_until):
            return self.local
        return self.limiter.limiter

    def _call(self, method: str, item: RateLimitItem, ids: tuple[str, ...], **kw: int) -> Any:
        strategy = self._strategy()
        try:
            result = getattr(strategy, method)(item, *ids, **kw)
        except Exception as exc:  # any storage failure: count in memory instead
            if strategy is self.local:
                raise
            log.warning("rate limit storage unreachable (%r); counting in memory", exc)
            self.down_until = time.monotonic() + STORAGE_RETRY_SECONDS
            return getattr(self.local, method)(item, *ids, **kw)
        if self.down_until and strategy is not self.local:
            log.warning("rate limit storage reachable again")
            self.down_until = 0.0
        return result

    def hit(self, item: RateLimitItem, *ids: str, cost: int = 1) -> bool:
        return self._call("hit", item, ids, cost=cost)

    def test(self, item: RateLimitItem, *ids: str) -> bool:
        return self._call("test", item, ids)

    def retry_after(self, item: RateLimitItem, *ids: str) -> int:
        reset_at = self._call("get_window_stats", item, ids).reset_time
        return max(1, math.ceil(reset_at - time.time()))


@dataclass
class PortalLimits:
    """One app's limiter, its API limits (parsed once) and the counters they use."""

    limiter: Limiter
    counters: Counters
    prefix: tuple[str, ...]
    api_key_limits: list[RateLimitItem]
    unauthenticated_limits: list[RateLimitItem]
    # Addresses past the wrong-key limit, until their window ends (epoch seconds). Kept in the
    # process so that the check costs a good key no round trip; each worker learns of a block
    # from the shared counter at the first wrong key it sees from that address.
    blocked: dict[str, float] = field(default_factory=dict)
    # Per API key: requests not yet sent to the storage; keys refused until (epoch seconds).
    pending: dict[str, int] = field(default_factory=dict)
    key_blocked: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse_blocked_address(self) -> None:
        until = self.blocked.get(client_address())
        if until is not None:
            wait = until - time.time()
            if wait > 0:
                raise RateLimited(WRONG_KEYS, math.ceil(wait))
            self.blocked.pop(client_address(), None)

    def count_failed_key(self) -> None:
        address = client_address()
        ids = (*self.prefix, "api-unauthenticated", address)
        for item in self.unauthenticated_limits:
            if not self.counters.hit(item, *ids):
                wait = self.counters.retry_after(item, *ids)
                if len(self.blocked) > MAX_BLOCKED:  # a flood of addresses: forget the old
                    self.blocked = {a: t for a, t in self.blocked.items() if t > time.time()}
                self.blocked[address] = time.time() + wait
                raise RateLimited(WRONG_KEYS, wait)

    def count_key(self, key_id: int) -> None:
        ids = (*self.prefix, "api-key", str(key_id))
        for item in self.api_key_limits:
            self._count_in_batches(item, ids)

    def _count_in_batches(self, item: RateLimitItem, ids: tuple[str, ...]) -> None:
        """Count here, send to the storage every ``report_batch(item)``-th request; a refused
        key is refused here, with no round trip, until its window ends."""
        key, batch, now = item.key_for(*ids), report_batch(item), time.time()
        message = f"This API key is limited to {item}."
        with self.lock:
            until = self.key_blocked.get(key)
            if until is not None and until > now:
                raise RateLimited(message, math.ceil(until - now))
            count = self.pending.get(key, 0) + 1
            self.pending[key] = 0 if count >= batch else count
        if count < batch or self.counters.hit(item, *ids, cost=batch):
            return
        wait = self.counters.retry_after(item, *ids)
        with self.lock:
            if len(self.key_blocked) > MAX_BLOCKED:
                self.key_blocked = {k: t for k, t in self.key_blocked.items() if t > now}
            self.key_blocked[key] = now + wait
        raise RateLimited(message, wait)


def report_batch(item: RateLimitItem) -> int:
    """Requests a process counts before sending them to the storage in one round trip: 1 (exact)
    below 200 a window, up to 20 for large limits; each worker can overshoot by batch - 1."""
    return max(1, min(MAX_BATCH, item.amount // 100))


def guard_api(authenticate: Callable[[], None]) -> Callable[[], None]:
    """Wrap the API's before-request authentication with its limits.

    The hook sets ``g.api_key_id`` when a key was accepted (public endpoints set none).
    """

    @wraps(authenticate)
    def guarded() -> None:
        limits: PortalLimits | None = current_app.extensions.get(EXTENSION)
        if limits is None:  # RATELIMIT_ENABLED off
            authenticate()
            return
        limits.refuse_blocked_address()
        try:
            authenticate()
        except Unauthorized:
            limits.count_failed_key()
            raise
        key_id = g.get("api_key_id")
        if key_id is not None:
            limits.count_key(key_id)

    return guarded


# --- wiring ----------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Trust the configured proxies, then build this app's limiter (after the blueprints)."""
    hops = int(app.config.get("PORTAL_TRUSTED_PROXIES") or 0)
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    parsed = {name: parse_many(app.config[name]) for name in SETTINGS}  # a typo fails start-up
    uri = app.config["RATELIMIT_STORAGE_URI"]
    if uri.startswith(("redis", "rediss", "valkey")):
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", dict(REDIS_OPTIONS))
    elif app.config.get("PORTAL_ENV") == "production" and app.config["RATELIMIT_ENABLED"]:
        app.logger.warning("rate limits are counted per process (%s): set REDIS_URL", uri)

    limiter = Limiter(
        client_address,
        strategy="fixed-window",  # one INCR+EXPIRE per hit: the cheapest strategy
        headers_enabled=False,  # X-RateLimit-* would cost a second round trip per request
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limiter.init_app(app)
    if not limiter.enabled:
        return
    # The API counts in its own hook (guard_api); the per-route machinery is for pages.
    limiter.request_filter(lambda: request.blueprint == "api")
    prefix = app.config.get("RATELIMIT_KEY_PREFIX") or ""
    app.extensions[EXTENSION] = PortalLimits(
        limiter,
        Counters(limiter, uri),
        (prefix,) if prefix else (),
        parsed[API_LIMIT],
        parsed[API_UNAUTHENTICATED_LIMIT],
    )
    for endpoint, view in list(app.view_functions.items()):
        if getattr(view, _RULES, None):
            app.view_functions[endpoint] = _enforce(app, limiter, view)
