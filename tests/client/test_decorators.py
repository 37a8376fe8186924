"""``@consume_credits``, ``@require_credits``, ``@credit_aware`` and how they find a client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from portal.client import (
    AsyncCreditClient,
    ClientConfigurationError,
    CreditClient,
    CreditInfo,
    DepartmentLimitExceededError,
    InsufficientCreditsError,
    configure,
    consume_credits,
    credit_aware,
    require_credits,
    use_client,
)
from tests.client.conftest import charges, ledger, make_client
from tests.live import LivePortal, OrgKey, Seeder


def kinds(credit_client: CreditClient) -> list[str]:
    return [row.kind for row in ledger(credit_client)][1:]  # after the opening grant


# --- consume_credits -------------------------------------------------------------------------


def test_consume_charges_before_the_function_runs(client: CreditClient) -> None:
    seen: list[Decimal] = []

    @consume_credits("seedream_text_to_image", client=client)
    def generate_image(prompt: str) -> str:
        """Make an image."""
        seen.append(client.balance().available)
        return f"image of {prompt}"

    assert generate_image("a cat") == "image of a cat"
    assert seen == [Decimal(995)]
    assert generate_image.__name__ == "generate_image"
    assert generate_image.__doc__ == "Make an image."
    assert kinds(client) == ["deduct"]


class ChatAgent:
    @consume_credits(
        "ai_chat",
        quantity=lambda message: len(message) // 100 + 1,
        user=lambda user_id: f"user-{user_id}",
        metadata=lambda message, user_id: {"chars": len(message), "user_id": user_id},
        description="AI chat message",
    )
    def chat(self, user_id: int, message: str) -> str:
        return message.upper()


def test_quantity_and_details_are_computed_from_named_arguments(client: CreditClient) -> None:
    with use_client(client):
        assert ChatAgent().chat(7, message="x" * 250) == "X" * 250

    (row,) = charges(client)
    assert (row.quantity, row.amount) == (Decimal(3), Decimal(-3))
    assert (row.user, row.description) == ("user-7", "AI chat message")
    assert row.metadata == {"chars": 250, "user_id": 7}


def test_callables_see_default_arguments(client: CreditClient) -> None:
    @consume_credits("file_processing", quantity=lambda size_mb: size_mb, client=client)
    def process_file(name: str, size_mb: Decimal = Decimal("2.5")) -> str:
        return name

    process_file("report.pdf")
    assert [row.quantity for row in charges(client)] == [Decimal("2.5")]


def test_a_star_args_callable_sees_the_call_as_given(client: CreditClient) -> None:
    @consume_credits(
        "file_processing", quantity=lambda *args, **kwargs: len(args) + len(kwargs), client=client
    )
    def merge(*paths: str, verbose: bool = False) -> int:
        return len(paths)

    assert merge("a.csv", "b.csv", verbose=True) == 2
    assert [row.quantity for row in charges(client)] == [Decimal(3)]


def test_consume_refunds_and_reraises_when_the_function_fails(client: CreditClient) -> None:
    @consume_credits("generate_video", quantity=30, client=client)
    def generate_video() -> None:
        raise RuntimeError("renderer crashed")

    with pytest.raises(RuntimeError, match="renderer crashed"):
        generate_video()

    rows = ledger(client)
    assert [row.kind for row in rows][1:] == ["deduct", "refund"]
    assert rows[-1].refund_of == rows[-2].id and rows[-1].amount == Decimal(15)
    assert "generate_video raised RuntimeError" in (rows[-1].description or "")
    assert client.balance().available == Decimal(1000)


def test_consume_refuses_before_running_when_short(client: CreditClient) -> None:
    ran: list[bool] = []

    @consume_credits("generate_content", quantity=5000, client=client)
    def expensive() -> None:
        ran.append(True)

    with pytest.raises(InsufficientCreditsError) as caught:
        expensive()
    assert caught.value.required == Decimal(5000)
    assert ran == [] and charges(client) == []


def test_a_bad_call_is_not_charged(client: CreditClient) -> None:
    @consume_credits("generate_content", client=client)
    def takes_one(value: int) -> int:
        return value

    with pytest.raises(TypeError):
        takes_one(1, 2)  # type: ignore[call-arg]
    assert charges(client) == []


def test_decoration_mistakes_fail_at_import_time(client: CreditClient) -> None:
    def generator() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        consume_credits("generate_content")(generator)
    with pytest.raises(TypeError, match="no parameter named size"):
        consume_credits("file_processing", quantity=lambda size: size)(lambda name: name)
    with pytest.raises(TypeError, match="AsyncCreditClient"):

        @consume_credits("generate_content", client=client)
        async def needs_async_client() -> None: ...

    with pytest.raises(TypeError, match="credit_info"):
        credit_aware("generate_content")(lambda: None)
    assert charges(client) == []


def test_async_consume_charges_and_refunds(live_portal: LivePortal, org: OrgKey) -> None:
    async def scenario() -> None:
        async with AsyncCreditClient(live_portal.url, org.api_key) as credit_client:

            @consume_credits("answer_question", quantity=lambda n: n, client=credit_client)
            async def answer(n: int, fail: bool = False) -> int:
                await asyncio.sleep(0)
                if fail:
                    raise ValueError("no answer")
                return n

            assert await answer(4) == 4
            with pytest.raises(ValueError):
                await answer(2, fail=True)

    asyncio.run(scenario())
    with make_client(live_portal.url, org.api_key) as credit_client:
        assert kinds(credit_client) == ["deduct", "deduct", "refund"]
        assert credit_client.balance().available == Decimal(998)


def test_cancelled_async_work_is_refunded(live_portal: LivePortal, org: OrgKey) -> None:
    async def scenario() -> None:
        async with AsyncCreditClient(live_portal.url, org.api_key) as credit_client:
            started = asyncio.Event()

            @consume_credits("generate_video", quantity=10, client=credit_client)
            async def generate_video() -> None:
                started.set()
                await asyncio.Event().wait()  # runs until cancelled

            task = asyncio.create_task(generate_video())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(scenario())
    with make_client(live_portal.url, org.api_key) as credit_client:
        assert kinds(credit_client) == ["deduct", "refund"]
        assert credit_client.balance().available == Decimal(1000)


# --- require_credits and credit_aware --------------------------------------------------------


def test_require_checks_but_never_charges(client: CreditClient) -> None:
    @require_credits("generate_video", quantity=lambda seconds: seconds, client=client)
    def plan_video(seconds: int) -> str:
        return "planned"

    assert plan_video(60) == "planned"
    with pytest.raises(InsufficientCreditsError) as caught:
        plan_video(5000)
    assert (caught.value.required, caught.value.available) == (Decimal(2500), Decimal(1000))
    assert (caught.value.status, caught.value.code) == (402, "insufficient_credits")
    assert charges(client) == []


def test_require_reports_a_department_limit(client: CreditClient) -> None:
    client.set_department_limit("Design", Decimal(3))

    @require_credits("seedream_text_to_image", department="Design", client=client)
    def draw() -> None: ...

    with pytest.raises(DepartmentLimitExceededError):
        draw()
    assert charges(client) == []


def test_async_require(live_portal: LivePortal, org: OrgKey) -> None:
    async def scenario() -> list[str]:
        async with AsyncCreditClient(live_portal.url, org.api_key) as credit_client:

            @require_credits("generate_content", quantity=lambda n: n, client=credit_client)
            async def work(n: int) -> str:
                return "done"

            outcomes = [await work(1)]
            try:
                await work(5000)
            except InsufficientCreditsError as exc:
                outcomes.append(exc.code)
            return outcomes

    assert asyncio.run(scenario()) == ["done", "insufficient_credits"]


def test_credit_aware_passes_cost_and_balance(client: CreditClient) -> None:
    @credit_aware("ai_chat", quantity=lambda message: len(message) // 100 + 1, client=client)
    def chat(message: str, credit_info: CreditInfo) -> CreditInfo:
        return credit_info

    info = chat("y" * 420)
    short = chat("z" * 200_000)

    assert info == CreditInfo("ai_chat", Decimal(5), Decimal(5), Decimal(1000), True, None)
    assert info.available == info.balance
    assert (short.has_enough, short.reason) == (False, "insufficient_credits")
    assert charges(client) == []


def test_async_credit_aware(live_portal: LivePortal, org: OrgKey) -> None:
    async def scenario() -> CreditInfo:
        async with AsyncCreditClient(live_portal.url, org.api_key) as credit_client:

            @credit_aware("generate_video", quantity=20, client=credit_client)
            async def render(**kwargs: Any) -> CreditInfo:
                return kwargs["credit_info"]

            return await render()

    info = asyncio.run(scenario())
    assert (info.cost, info.balance, info.has_enough) == (Decimal(10), Decimal(1000), True)


# --- finding the client: explicit, then use_client, then configure() -------------------------


@consume_credits("generate_content")
def charged_anywhere() -> str:
    return "ok"


@consume_credits("generate_content")
async def charged_anywhere_async() -> str:
    return "ok"


def test_client_resolution_order(live_portal: LivePortal, seeder: Seeder) -> None:
    default, scoped, explicit = (seeder.org(10) for _ in range(3))
    configure(base_url=live_portal.url, api_key=default.api_key, backoff=0.01)
    scoped_client = make_client(live_portal.url, scoped.api_key)
    explicit_client = make_client(live_portal.url, explicit.api_key)
    pinned = consume_credits("generate_content", client=explicit_client)(lambda: "ok")

    charged_anywhere()  # the module default
    with use_client(scoped_client):
        charged_anywhere()  # the context's client wins over the default
        charged_anywhere()
        pinned()  # an explicit client wins over both

    balances = {}
    for name, key in (("default", default), ("scoped", scoped), ("explicit", explicit)):
        with make_client(live_portal.url, key.api_key) as reader:
            balances[name] = reader.balance().available
    assert balances == {"default": Decimal(9), "scoped": Decimal(8), "explicit": Decimal(9)}
    scoped_client.close()
    explicit_client.close()


def test_async_resolution_uses_the_async_slot(live_portal: LivePortal, seeder: Seeder) -> None:
    default, scoped = seeder.org(10), seeder.org(10)
    configure(base_url=live_portal.url, api_key=default.api_key)

    async def scenario() -> None:
        await charged_anywhere_async()
        async with AsyncCreditClient(live_portal.url, scoped.api_key) as credit_client:
            with use_client(credit_client):
                await charged_anywhere_async()
                await charged_anywhere_async()

    asyncio.run(scenario())
    asyncio.run(scenario())  # a second event loop gets a default client of its own
    for key, expected in ((default, Decimal(8)), (scoped, Decimal(6))):
        with make_client(live_portal.url, key.api_key) as reader:
            assert reader.balance().available == expected


def test_no_client_anywhere_is_an_error_not_free_usage() -> None:
    with pytest.raises(ClientConfigurationError, match="configure"):
        charged_anywhere()
    with pytest.raises(ClientConfigurationError):
        asyncio.run(charged_anywhere_async())
    with pytest.raises(TypeError), use_client("not a client"):  # type: ignore[type-var]
        pass
    with pytest.raises(ValueError):
        configure(base_url="localhost:5000", api_key="k")
