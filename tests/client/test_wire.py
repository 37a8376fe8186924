"""The shared pieces that need no server: wire format, error classes, backoff, token maths."""

from __future__ import annotations

import json
from decimal import Decimal
from types import SimpleNamespace

import pytest

from portal.client import errors, normalize_model
from portal.client._wire import RetryPolicy, Settings, decode_json, encode_json
from portal.client.operations import number
from portal.client.tokens import TokenMeter, default_usage, thousands, token_lines


def test_decimals_go_out_as_plain_json_numbers() -> None:
    body = {"q": Decimal("0.001"), "big": Decimal("1E+3"), "n": 3, "s": 'a"b', "m": [None, True]}
    assert encode_json(body) == b'{"q":0.001,"big":1000,"n":3,"s":"a\\"b","m":[null,true]}'
    assert json.loads(encode_json({"x": Decimal("994.997")}), parse_float=Decimal) == {
        "x": Decimal("994.997")
    }


@pytest.mark.parametrize(
    ("value", "error"),
    [(Decimal("NaN"), ValueError), ({1: "x"}, TypeError), (object(), TypeError)],
)
def test_what_json_cannot_carry_is_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_json({"v": value})


def test_amounts_come_back_as_decimals_never_floats() -> None:
    payload = decode_json(b'{"balance": 994.997, "count": 3}')
    assert payload == {"balance": Decimal("994.997"), "count": 3}
    assert isinstance(payload["balance"], Decimal)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (Decimal("0.5"), Decimal("0.5")), (" 2.25 ", Decimal("2.25"))],
)
def test_numbers_accepted(value: object, expected: object) -> None:
    assert number(value, "quantity") == expected


@pytest.mark.parametrize("value", [True, None, "abc", "inf", Decimal("NaN")])
def test_numbers_refused(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        number(value, "quantity")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (len("x" * 210) / 100, "2.1"),  # "1 credit per 100 characters", as people write it
        (0.1, "0.1"),  # its shortest form, not 0.1000000000000000055511151231257827…
        (0.1 + 0.2, "0.3"),  # 0.30000000000000004, rounded to 6 places
        (1 / 3, "0.333333"),
        (2 / 3, "0.666667"),
        (0.0000005, "0.000001"),  # half-up
        (0.0000004999, "0"),
        (-2.5, "-2.5"),
        (1e20, "100000000000000000000"),
        (12.0, "12"),
    ],
)
def test_floats_go_through_their_shortest_form_rounded_half_up(value: float, expected: str) -> None:
    result = number(value, "quantity")
    assert isinstance(result, Decimal) and result == Decimal(expected)
    assert encode_json({"q": result}) == f'{{"q":{expected}}}'.encode()


def test_a_float_subclass_is_read_as_its_float_value() -> None:
    class Float64(float):  # as numpy's float64, whose repr is "np.float64(0.1)"
        def __repr__(self) -> str:
            return f"Float64({float(self)!r})"

    assert number(Float64(0.1), "quantity") == Decimal("0.1")


def test_ints_and_decimals_stay_exactly_as_given() -> None:
    assert type(number(7, "quantity")) is int
    assert number(Decimal("0.1234567"), "quantity") == Decimal("0.1234567")  # the portal decides


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_float_that_is_no_number_is_refused_clearly(value: float) -> None:
    with pytest.raises(ValueError, match=r"quantity must be a finite number, got (nan|inf|-inf)"):
        number(value, "quantity")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://portal.example",
        "http://portal.example/",
        "http://portal.example/api/v1",
        "http://portal.example/api/v1/",
    ],
)
def test_base_url_may_end_in_the_api_path(base_url: str) -> None:
    settings = Settings.create(
        base_url, " cpk_secret\n", timeout=1, max_retries=0, backoff=0, max_backoff=0
    )
    assert settings.base_url == "http://portal.example"
    assert settings.httpx_options()["headers"]["Authorization"] == "Bearer cpk_secret"


def test_an_api_key_of_only_whitespace_is_refused() -> None:
    with pytest.raises(ValueError, match="api_key"):
        Settings.create("http://x", "  \t", timeout=1, max_retries=0, backoff=0, max_backoff=0)


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (402, "insufficient_credits", errors.InsufficientCreditsError),
        (402, "department_limit_exceeded", errors.DepartmentLimitExceededError),
        (402, "something_new", errors.PaymentRequiredError),
        (404, "feature_not_found", errors.FeatureNotFoundError),
        (404, "department_not_found", errors.DepartmentNotFoundError),
        (404, "deduction_not_found", errors.DeductionNotFoundError),
        (404, "reservation_not_found", errors.ReservationNotFoundError),
        (409, "already_refunded", errors.AlreadyRefundedError),
        (409, "reservation_not_open", errors.ReservationNotOpenError),
        (409, "idempotency_key_in_use", errors.IdempotencyKeyInUseError),
        (409, "refund_exceeds_deduction", errors.RefundExceedsDeductionError),
        (422, "idempotency_key_reused", errors.IdempotencyKeyReusedError),
        (422, "invalid_request", errors.InvalidRequestError),
        (400, "invalid_json", errors.InvalidJSONError),
        (401, "unauthorized", errors.AuthenticationError),
        (403, "forbidden", errors.PermissionDeniedError),
        (429, "slow_down", errors.RateLimitedError),
        (500, "internal_error", errors.ServerError),
        (503, "insufficient_credits", errors.ServerError),  # the status wins over a stray code
        (418, "teapot", errors.CreditsAPIError),
    ],
)
def test_error_classes(status: int, code: str, expected: type[errors.CreditsAPIError]) -> None:
    error = errors.error_from_payload(status, {"error": {"code": code, "message": "m", "x": 1}})
    assert type(error) is expected
    assert (error.status, error.code, error.message, error.details) == (status, code, "m", {"x": 1})


def test_an_error_without_a_json_body() -> None:
    error = errors.error_from_payload(502, None, "<html>bad gateway</html>")
    assert type(error) is errors.ServerError
    assert (error.code, error.message) == ("http_502", "<html>bad gateway</html>")


def test_backoff_grows_is_capped_and_jittered() -> None:
    low, high = RetryPolicy(5, 0.1, 0.5, jitter=lambda: 0.0), RetryPolicy(5, 0.1, 0.5, lambda: 1.0)
    server = errors.ServerError("x")

    assert [low.delay(n, server) for n in range(5)] == [0.05, 0.1, 0.2, 0.25, 0.25]
    assert [high.delay(n, server) for n in range(6)] == [0.1, 0.2, 0.4, 0.5, 0.5, None]


def test_only_transient_failures_are_retried() -> None:
    policy = RetryPolicy(3, 0.1, 1.0)
    lost = errors.CreditsConnectionError("x", details={"retryable": True})
    local = errors.CreditsConnectionError("x", details={"retryable": False})
    slow = errors.RateLimitedError("x")
    slow.retry_after = 0.8

    assert policy.delay(0, lost) is not None
    assert policy.delay(0, errors.IdempotencyKeyInUseError("x")) is not None
    assert policy.delay(0, slow) >= 0.8  # type: ignore[operator]  # Retry-After is honoured
    for refusal in (local, errors.InsufficientCreditsError("x"), errors.InvalidRequestError("x")):
        assert policy.delay(0, refusal) is None
    assert policy.delay(3, lost) is None


@pytest.mark.parametrize(
    ("model", "key"),
    [
        ("claude-3-5-sonnet", "claude_3_5_sonnet"),
        ("Claude 3.5 Sonnet", "claude_3_5_sonnet"),
        ("gpt-4o-mini", "gpt_4o_mini"),
        ("  GPT-4o  ", "gpt_4o"),
        ("models/gemini-1.5-pro-002", "models_gemini_1_5_pro_002"),
    ],
)
def test_model_names_become_feature_key_parts(model: str, key: str) -> None:
    assert normalize_model(model) == key


def test_a_model_name_needs_letters_or_digits() -> None:
    with pytest.raises(ValueError):
        normalize_model("--")


@pytest.mark.parametrize(
    ("tokens", "quantity"),
    [(1, "0.001"), (1234, "1.234"), (1000, "1"), (10_000, "10"), (999_999, "999.999")],
)
def test_tokens_are_thousands(tokens: int, quantity: str) -> None:
    assert thousands(tokens) == Decimal(quantity)
    assert "E" not in str(thousands(tokens))


def test_token_lines_skip_empty_sides_and_reject_bad_counts() -> None:
    (line,) = token_lines("gpt-4o", 0, 1500, user="u")
    assert (line.feature_key, line.quantity, line.user) == ("gpt_4o_output_1k_tokens", 1.5, "u")
    with pytest.raises(ValueError):
        token_lines("gpt-4o", -1, 0)
    with pytest.raises(TypeError):
        token_lines("gpt-4o", 1.5, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chunk", "counts"),
    [
        (SimpleNamespace(usage=SimpleNamespace(input_tokens=5, output_tokens=7)), (5, 7)),
        (SimpleNamespace(message=SimpleNamespace(usage={"input_tokens": 9})), (9, None)),
        ({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}, (3, 4)),
        ({"usage": None}, None),
        ("plain text", None),
        (SimpleNamespace(usage=SimpleNamespace()), None),
    ],
)
def test_default_usage_reads_common_shapes(chunk: object, counts: object) -> None:
    assert default_usage(chunk) == counts


def test_meter_keeps_running_totals_or_adds_deltas() -> None:
    reports = [{"usage": {"input_tokens": 10, "output_tokens": 1}}, {"usage": {"output_tokens": 8}}]
    totals, deltas = TokenMeter(), TokenMeter(cumulative=False)
    for report in reports:
        totals.observe(report)
        deltas.observe(report)
    assert (totals.input_tokens, totals.output_tokens) == (10, 8)
    assert (deltas.input_tokens, deltas.output_tokens) == (10, 9)
