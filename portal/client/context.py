"""Where decorators and helpers find their client, in this order:

1. the ``client=`` argument given to the decorator or helper;
2. the client of the innermost ``with use_client(client):`` block (a context variable, so it
   follows the current thread and asyncio task, and tests or request handlers can swap it);
3. the module default set once at start-up by ``configure(base_url=..., api_key=...)``.

Nothing found is a ``ClientConfigurationError`` that says so, never a silent no-op: a missing
configuration must not turn into free usage. Sync functions need a ``CreditClient`` and async
ones an ``AsyncCreditClient``; ``use_client`` and ``configure`` serve both.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from portal.client.aio import AsyncCreditClient
from portal.client.errors import ClientConfigurationError
from portal.client.sync import CreditClient

AnyClient = TypeVar("AnyClient", CreditClient, AsyncCreditClient)

_current_sync: ContextVar[CreditClient | None] = ContextVar("credits_client", default=None)
_current_async: ContextVar[AsyncCreditClient | None] = ContextVar(
    "credits_async_client", default=None
)


class _Defaults:
    """The ``configure()``d settings and the clients made from them, lazily."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.options: dict[str, Any] | None = None
        self.sync_client: CreditClient | None = None
        # httpx binds an async pool to the loop it first ran on: one client per event loop.
        self.async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncCreditClient
        ] = weakref.WeakKeyDictionary()

    def sync(self) -> CreditClient | None:
        with self.lock:
            if self.sync_client is None and self.options is not None:
                self.sync_client = CreditClient(**self.options)
            return self.sync_client

    def for_loop(self) -> AsyncCreditClient | None:
        loop = asyncio.get_running_loop()
        with self.lock:
            client = self.async_clients.get(loop)
            if client is None and self.options is not None:
                client = self.async_clients[loop] = AsyncCreditClient(**self.options)
            return client


_defaults = _Defaults()


def configure(base_url: str, api_key: str, **options: Any) -> None:
    """Set the module default client (``timeout``, ``max_retries``… as for ``CreditClient``)."""
    CreditClient(base_url, api_key, **options).close()  # validate now, not at first use
    reset_default()
    with _defaults.lock:
        _defaults.options = {"base_url": base_url, "api_key": api_key, **options}


def reset_default() -> None:
    """Forget the module default (and close its sync client): at shutdown, or between tests."""
    with _defaults.lock:
        client, _defaults.sync_client = _defaults.sync_client, None
        _defaults.options = None
        _defaults.async_clients = weakref.WeakKeyDictionary()
    if client is not None:
        client.close()


@contextmanager
def use_client(client: AnyClient) -> Iterator[AnyClient]:
    """Make ``client`` the one decorators and helpers use inside this block."""
    if isinstance(client, AsyncCreditClient):
        async_token = _current_async.set(client)
        try:
            yield client
        finally:
            _current_async.reset(async_token)
    elif isinstance(client, CreditClient):
        sync_token = _current_sync.set(client)
        try:
            yield client
        finally:
            _current_sync.reset(sync_token)
    else:
        raise TypeError(f"use_client() needs a CreditClient or AsyncCreditClient, not {client!r}")


_HOW_TO_CONFIGURE = (
    "pass client=..., wrap the call in `with use_client(client):`, "
    "or call portal.client.configure(base_url=..., api_key=...) at start-up"
)


def resolve_client(explicit: CreditClient | None = None) -> CreditClient:
    """The sync client to use now: explicit, then ``use_client``, then the module default."""
    if explicit is not None:
        if not isinstance(explicit, CreditClient):
            raise TypeError(f"a sync function needs a CreditClient, got {explicit!r}")
        return explicit
    client = _current_sync.get() or _defaults.sync()
    if client is None:
        raise ClientConfigurationError(f"No credits client: {_HOW_TO_CONFIGURE}.")
    return client


def resolve_async_client(explicit: AsyncCreditClient | None = None) -> AsyncCreditClient:
    """The async client to use now: explicit, then ``use_client``, then the module default."""
    if explicit is not None:
        if not isinstance(explicit, AsyncCreditClient):
            raise TypeError(f"an async function needs an AsyncCreditClient, got {explicit!r}")
        return explicit
    client = _current_async.get() or _defaults.for_loop()
    if client is None:
        raise ClientConfigurationError(f"No async credits client: {_HOW_TO_CONFIGURE}.")
    return client
