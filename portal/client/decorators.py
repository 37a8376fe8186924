"""``@consume_credits``, ``@require_credits`` and ``@credit_aware`` for sync and async functions.

``quantity`` (and ``department``, ``user``, ``description``, ``metadata``) may be a value or a
callable. A callable receives, by name, the decorated function's arguments it asks for (defaults
applied): ``quantity=lambda message: len(message) // 100 + 1`` works on
``def chat(self, user_id, message)``; one that takes ``*args`` gets the call's arguments exactly
as given. Arguments are checked against the function's signature
*before* anything is charged, so a bad call costs nothing.

The client comes from ``client=``, else ``use_client()``, else ``configure()`` (see ``context``).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from portal.client.aio import AsyncCreditClient
from portal.client.context import resolve_async_client, resolve_client
from portal.client.errors import (
    CreditsAPIError,
    DepartmentLimitExceededError,
    InsufficientCreditsError,
    PaymentRequiredError,
)
from portal.client.operations import number
from portal.client.results import CheckResult, CreditInfo, Deduction
from portal.client.sync import CreditClient

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("portal.client")

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class _BoundCall:
    """One call of the decorated function: its arguments by name (defaults applied) and as given."""

    values: dict[str, Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class _Arguments:
    """Binds a call's arguments by parameter name, for the callables that compute a charge."""

    def __init__(self, func: Callable[..., Any], hidden: str | None = None) -> None:
        signature = inspect.signature(func)
        if hidden is not None:
            signature = signature.replace(
                parameters=[p for p in signature.parameters.values() if p.name != hidden]
            )
        self.signature = signature

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _BoundCall:
        bound = self.signature.bind(*args, **kwargs)  # a bad call fails here, before any charge
        bound.apply_defaults()
        values: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if self.signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                values.update(value)
            else:
                values[name] = value
        return _BoundCall(values, args, kwargs)

    def picker(self, compute: Callable[..., Any], what: str) -> Callable[[_BoundCall], Any]:
        """Calls ``compute`` with the arguments it names, or all of them as given if it takes
        ``*args`` (``lambda *args, **kwargs: ...`` sees exactly what the function saw)."""
        params = inspect.signature(compute).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
            return lambda call: compute(*call.args, **call.kwargs)
        if any(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params):
            raise TypeError(f"{what}: a callable's parameters must be nameable (no '/')")
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return lambda call: compute(**call.values)
        names = [p.name for p in params if p.kind in _NAMED]
        known = set(self.signature.parameters)
        takes_any = any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in self.signature.parameters.values()
        )
        unknown = [
            p.name
            for p in params
            if p.kind in _NAMED and p.name not in known and p.default is inspect.Parameter.empty
        ]
        if unknown and not takes_any:
            raise TypeError(f"{what}: the function has no parameter named {', '.join(unknown)}")
        return lambda call: compute(**{n: call.values[n] for n in names if n in call.values})


@dataclass(frozen=True)
class _Charge:
    """A decorator's charge: some parts fixed, some computed from the call's arguments."""

    feature_key: str
    arguments: _Arguments
    fixed: Mapping[str, Any]
    computed: Mapping[str, Callable[[_BoundCall], Any]]

    @classmethod
    def build(
        cls, func: Callable[..., Any], feature_key: str, hidden: str | None = None, **parts: Any
    ) -> _Charge:
        arguments = _Arguments(func, hidden)
        computed = {
            name: arguments.picker(value, f"{func.__qualname__} {name}=")
            for name, value in parts.items()
            if callable(value)
        }
        fixed = {name: value for name, value in parts.items() if name not in computed}
        return cls(feature_key, arguments, fixed, computed)

    def spend(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        call = self.arguments.bind(args, kwargs)
        spend = {"feature_key": self.feature_key, **self.fixed}
        spend.update({name: compute(call) for name, compute in self.computed.items()})
        return spend


def _check_function(func: Callable[..., Any], client: Any) -> bool:
    """True for async functions; refuses what a decorator cannot meter correctly."""
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        raise TypeError(
            f"{func.__qualname__} is a generator: it would be charged before it runs and never "
            "refunded; meter a stream with portal.client.meter_stream instead"
        )
    is_async = inspect.iscoroutinefunction(func)
    if client is not None:
        wanted = AsyncCreditClient if is_async else CreditClient
        if not isinstance(client, wanted):
            raise TypeError(f"{func.__qualname__} needs a {wanted.__name__}, got {client!r}")
    return is_async


def _refund_reason(func: Callable[..., Any], exc: BaseException) -> str:
    return f"{func.__qualname__} raised {type(exc).__name__}"[:500]


def _refund_failed(deduction: Deduction, exc: BaseException, error: CreditsAPIError) -> None:
    note = (
        f"refunding deduction {deduction.deduction_id} ({deduction.credits_deducted} credits) "
        f"failed: {error}; refund it by hand"
    )
    log.error(note)
    exc.add_note(note)


def consume_credits(
    feature_key: str,
    quantity: Any = 1,
    *,
    department: Any = None,
    user: Any = None,
    description: Any = None,
    metadata: Any = None,
    client: CreditClient | AsyncCreditClient | None = None,
) -> Callable[[F], F]:
    """Deduct before the function runs; if it raises, refund the deduction and re-raise.

    A shortfall raises ``InsufficientCreditsError`` (or ``DepartmentLimitExceededError``) and
    the function does not run.
    """

    def decorate(func: F) -> F:
        is_async = _check_function(func, client)
        charge = _Charge.build(
            func,
            feature_key,
            quantity=quantity,
            department=department,
            user=user,
            description=description,
            metadata=metadata,
        )

        if is_async:

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                spend = charge.spend(args, kwargs)
                api = resolve_async_client(client)  # type: ignore[arg-type]
                deduction = await api.deduct(**spend)
                try:
                    return await func(*args, **kwargs)
                except BaseException as exc:  # cancellation too: the work did not happen
                    try:
                        await api.refund(deduction.deduction_id, reason=_refund_reason(func, exc))
                    except CreditsAPIError as error:
                        _refund_failed(deduction, exc, error)
                    raise

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            spend = charge.spend(args, kwargs)
            api = resolve_client(client)  # type: ignore[arg-type]
            deduction = api.deduct(**spend)
            try:
                return func(*args, **kwargs)
            except BaseException as exc:
                try:
                    api.refund(deduction.deduction_id, reason=_refund_reason(func, exc))
                except CreditsAPIError as error:
                    _refund_failed(deduction, exc, error)
                raise

        return run  # type: ignore[return-value]

    return decorate


def shortfall_error(result: CheckResult, feature_key: str) -> PaymentRequiredError:
    """The error a deduct would have raised, built from a negative check."""
    details = {"required": result.required, "available": result.available}
    if result.reason == "department_limit_exceeded":
        return DepartmentLimitExceededError(
            f"The department's monthly limit does not cover {result.required} credits "
            f"for {feature_key}.",
            status=402,
            details=details,
        )
    return InsufficientCreditsError(
        f"{feature_key} needs {result.required} credits; {result.available} are available.",
        status=402,
        details=details,
    )


def _checker(
    func: Callable[..., Any],
    feature_key: str,
    quantity: Any,
    department: Any,
    client: Any,
    hidden: str | None,
) -> tuple[bool, _Charge]:
    is_async = _check_function(func, client)
    charge = _Charge.build(func, feature_key, hidden, quantity=quantity, department=department)
    return is_async, charge


def require_credits(
    feature_key: str,
    quantity: Any = 1,
    *,
    department: Any = None,
    client: CreditClient | AsyncCreditClient | None = None,
) -> Callable[[F], F]:
    """Check only: raise the shortfall error before the call; charge nothing.

    A check is advisory (another request may spend the credits a moment later); use
    ``consume_credits`` or a reservation when the work must be paid for.
    """

    def decorate(func: F) -> F:
        is_async, charge = _checker(func, feature_key, quantity, department, client, None)

        if is_async:

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                spend = charge.spend(args, kwargs)
                result = await resolve_async_client(client).check(**spend)  # type: ignore[arg-type]
                if not result.has_enough:
                    raise shortfall_error(result, feature_key)
                return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            spend = charge.spend(args, kwargs)
            result = resolve_client(client).check(**spend)  # type: ignore[arg-type]
            if not result.has_enough:
                raise shortfall_error(result, feature_key)
            return func(*args, **kwargs)

        return run  # type: ignore[return-value]

    return decorate


def _credit_info(spend: dict[str, Any], result: CheckResult) -> CreditInfo:
    return CreditInfo(
        feature_key=spend["feature_key"],
        quantity=Decimal(number(spend["quantity"], "quantity")),
        cost=result.required,
        balance=result.available,
        has_enough=result.has_enough,
        reason=result.reason,
    )


def credit_aware(
    feature_key: str,
    quantity: Any = 1,
    *,
    department: Any = None,
    client: CreditClient | AsyncCreditClient | None = None,
) -> Callable[[F], F]:
    """Pass ``credit_info`` (cost, available balance, has_enough) to the function; charge nothing.

    The function decides: degrade gracefully, ask for a top-up, or deduct itself.
    """

    def decorate(func: F) -> F:
        params = inspect.signature(func).parameters
        if "credit_info" not in params and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        ):
            raise TypeError(f"{func.__qualname__} must accept a credit_info argument")
        is_async, charge = _checker(func, feature_key, quantity, department, client, "credit_info")

        if is_async:

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                spend = charge.spend(args, kwargs)
                result = await resolve_async_client(client).check(**spend)  # type: ignore[arg-type]
                return await func(*args, credit_info=_credit_info(spend, result), **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            spend = charge.spend(args, kwargs)
            result = resolve_client(client).check(**spend)  # type: ignore[arg-type]
            return func(*args, credit_info=_credit_info(spend, result), **kwargs)

        return run  # type: ignore[return-value]

    return decorate
