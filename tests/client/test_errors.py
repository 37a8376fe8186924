"""Every error code of the contract becomes its typed error, provoked on the live portal."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from portal.client import (
    AlreadyRefundedError,
    AuthenticationError,
    CreditClient,
    CreditsAPIError,
    CreditsConnectionError,
    DeductionNotFoundError,
    DeductLine,
    DepartmentLimitExceededError,
    DepartmentNotFoundError,
    FeatureNotFoundError,
    IdempotencyKeyReusedError,
    InsufficientCreditsError,
    InvalidJSONError,
    InvalidRequestError,
    NotFoundError,
    PaymentRequiredError,
    RefundExceedsDeductionError,
    ReservationNotFoundError,
    ReservationNotOpenError,
)
from portal.client import operations as ops
from portal.client._wire import Call, interpret
from tests.client.conftest import charges, make_client
from tests.live import INACTIVE_FEATURE, LivePortal, OrgKey, Seeder, free_port

MISSING_ID = 987_654_321


def test_unknown_api_key_is_an_authentication_error(live_portal: LivePortal) -> None:
    stranger = make_client(live_portal.url, "cpk_00000000_nope")
    with stranger, pytest.raises(AuthenticationError) as caught:
        stranger.balance()
    assert (caught.value.status, caught.value.code) == (401, "unauthorized")
    assert "unknown" in caught.value.message


def test_revoked_api_key_is_an_authentication_error(
    live_portal: LivePortal, seeder: Seeder, org: OrgKey
) -> None:
    seeder.revoke_keys(org.slug)
    with make_client(live_portal.url, org.api_key) as revoked, pytest.raises(AuthenticationError):
        revoked.deduct("generate_content")


def test_insufficient_credits_says_what_was_needed(client: CreditClient) -> None:
    with pytest.raises(InsufficientCreditsError) as caught:
        client.deduct("generate_content", quantity=1001)

    error = caught.value
    assert isinstance(error, PaymentRequiredError) and isinstance(error, CreditsAPIError)
    assert (error.status, error.code) == (402, "insufficient_credits")
    assert (error.required, error.available) == (Decimal(1001), Decimal(1000))
    assert isinstance(error.required, Decimal)
    assert str(error).startswith("insufficient_credits (HTTP 402): ")
    assert charges(client) == []


def test_department_limit_exceeded_carries_limit_and_use(client: CreditClient) -> None:
    client.set_department_limit("Support", Decimal("1.5"))
    client.deduct("generate_content", department="Support")

    with pytest.raises(DepartmentLimitExceededError) as caught:
        client.deduct("generate_content", department="Support")

    error = caught.value
    assert (error.limit, error.used, error.required) == (Decimal("1.5"), Decimal(1), Decimal(1))
    assert error.status == 402 and isinstance(error, PaymentRequiredError)


@pytest.mark.parametrize("feature_key", ["no_such_feature", INACTIVE_FEATURE])
def test_unknown_or_inactive_feature(client: CreditClient, feature_key: str) -> None:
    with pytest.raises(FeatureNotFoundError) as caught:
        client.deduct(feature_key)
    assert caught.value.feature_key == feature_key
    assert isinstance(caught.value, NotFoundError) and caught.value.status == 404
    with pytest.raises(FeatureNotFoundError):
        client.check(feature_key)
    with pytest.raises(FeatureNotFoundError):
        client.reserve(feature_key)


def test_pricing_of_an_unknown_feature(client: CreditClient) -> None:
    with pytest.raises(FeatureNotFoundError):
        client.pricing("no_such_feature")


def test_unknown_department(client: CreditClient) -> None:
    with pytest.raises(DepartmentNotFoundError) as caught:
        client.deduct("generate_content", department="Nowhere")
    assert caught.value.department == "Nowhere"


def test_refund_of_a_missing_or_foreign_deduction(
    client: CreditClient, live_portal: LivePortal, seeder: Seeder
) -> None:
    other = seeder.org(10)
    with make_client(live_portal.url, other.api_key) as other_client:
        foreign = other_client.deduct("generate_content")

    for deduction_id in (MISSING_ID, foreign.deduction_id):
        with pytest.raises(DeductionNotFoundError) as caught:
            client.refund(deduction_id)
        assert caught.value.status == 404


def test_refunding_twice_or_too_much(client: CreditClient) -> None:
    deduction = client.deduct("seedream_text_to_image")
    with pytest.raises(RefundExceedsDeductionError) as caught:
        client.refund(deduction.deduction_id, amount=Decimal("5.000001"))
    assert (caught.value.status, caught.value.refundable) == (409, Decimal(5))

    client.refund(deduction.deduction_id)
    with pytest.raises(AlreadyRefundedError) as again:
        client.refund(deduction.deduction_id)
    assert again.value.status == 409


def test_missing_reservation(client: CreditClient) -> None:
    with pytest.raises(ReservationNotFoundError):
        client.capture(MISSING_ID)
    with pytest.raises(ReservationNotFoundError):
        client.release(MISSING_ID)


def test_closed_reservation_cannot_be_captured_or_released(client: CreditClient) -> None:
    hold = client.reserve("generate_video", quantity=2)
    client.release(hold.reservation_id)

    with pytest.raises(ReservationNotOpenError) as caught:
        client.capture(hold.reservation_id)
    assert (caught.value.status, caught.value.reservation_status) == (409, "released")
    with pytest.raises(ReservationNotOpenError):
        client.release(hold.reservation_id)


def test_reusing_a_key_for_another_request(client: CreditClient) -> None:
    client.deduct("generate_content", idempotency_key="order-17")
    with pytest.raises(IdempotencyKeyReusedError) as caught:
        client.deduct("generate_content", quantity=2, idempotency_key="order-17")
    assert caught.value.status == 422
    assert len(charges(client)) == 1


@pytest.mark.parametrize(
    ("send", "field"),
    [
        (lambda c: c.deduct("generate_content", quantity=0), "quantity"),
        (lambda c: c.deduct("generate_content", quantity=Decimal("0.0000001")), "quantity"),
        (lambda c: c.deduct("generate_content", quantity=2_000_000), "quantity"),
        (lambda c: c.reserve("generate_video", expires_in=0), "expires_in"),
        (
            lambda c: c.deduct_batch([DeductLine("generate_content"), DeductLine("x", -1)]),
            "lines[1].quantity",
        ),
        (lambda c: c.deduct("generate_content", idempotency_key="k" * 256), "Idempotency-Key"),
    ],
)
def test_invalid_requests_name_the_field(client: CreditClient, send, field: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        send(client)
    assert (caught.value.status, caught.value.field) == (422, field)
    assert charges(client) == []


@pytest.mark.parametrize("key", ["", " padded", "tab\there", "ключ"])
def test_keys_a_header_cannot_carry_are_refused_before_sending(
    client: CreditClient, key: str
) -> None:
    with pytest.raises(ValueError, match="idempotency_key"):
        client.deduct("generate_content", idempotency_key=key)
    assert charges(client) == []


def test_malformed_json_maps_to_invalid_json(live_portal: LivePortal, org: OrgKey) -> None:
    # The client cannot send malformed JSON, so send it raw and read the answer the client's way.
    response = httpx.post(
        f"{live_portal.url}/api/v1/credits/deduct",
        content=b'{"feature_key": ',
        headers={"Authorization": f"Bearer {org.api_key}", "Content-Type": "application/json"},
    )
    with pytest.raises(InvalidJSONError) as caught:
        interpret(ops.deduct("generate_content"), response)
    assert (caught.value.status, caught.value.code) == (400, "invalid_json")


def test_unknown_codes_fall_back_to_the_status_class(client: CreditClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        client.send(Call("GET", "/api/v1/no-such-endpoint", lambda payload, _: payload))
    assert type(missing.value) is NotFoundError and missing.value.code == "not_found"

    with pytest.raises(CreditsAPIError) as wrong_method:
        client.send(Call("DELETE", "/api/v1/balance", lambda payload, _: payload))
    assert type(wrong_method.value) is CreditsAPIError
    assert (wrong_method.value.status, wrong_method.value.code) == (405, "method_not_allowed")


def test_unreachable_portal_is_a_connection_error_after_retries() -> None:
    with (
        CreditClient(
            f"http://127.0.0.1:{free_port()}", "key", max_retries=2, backoff=0.001
        ) as nowhere,
        pytest.raises(CreditsConnectionError) as caught,
    ):
        nowhere.balance()
    assert caught.value.status is None and caught.value.code == "connection_error"
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
