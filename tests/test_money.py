"""portal.money: exact parsing, rounding and rendering of micro-credits (no database)."""

from decimal import ROUND_HALF_UP, Decimal

import pytest

from portal.money import (
    MAX_MICROS,
    MICRO,
    AmountError,
    TypedAmountError,
    cost_micros,
    format_credits,
    micros_to_decimal,
    parse_micros,
    parse_typed_credits,
    parse_typed_currency,
    to_decimal,
)


def micros_of(text: str) -> int:
    """The reference conversion, independent of the code under test."""
    return int(Decimal(text) * MICRO)


@pytest.mark.parametrize(
    "value",
    [
        "1",
        "0.5",
        "0.000001",
        "994.997",
        "123456.654321",
        " 7.25 ",
        "1e3",
        "1.500000",
        "9223372036854.775807",  # the largest amount a BIGINT column holds, beyond a float
    ],
)
def test_parse_micros_accepts_decimal_strings(value):
    assert parse_micros(value) == micros_of(value.strip())


@pytest.mark.parametrize("value", [Decimal("0.001"), Decimal("12.345678"), 3, 10**12])
def test_parse_micros_accepts_decimals_and_ints(value):
    assert parse_micros(value) == int(Decimal(value) * MICRO)


@pytest.mark.parametrize("value", ["0.0000001", "1.1234567", Decimal("0.0000005"), "2.0000000001"])
def test_parse_micros_rejects_more_than_six_places(value):
    with pytest.raises(AmountError, match="6 decimal places"):
        parse_micros(value)


@pytest.mark.parametrize("value", ["-1", Decimal("-0.000001"), -5])
def test_parse_micros_rejects_negative_unless_allowed(value):
    with pytest.raises(AmountError, match="negative"):
        parse_micros(value)
    assert parse_micros(value, allow_negative=True) == int(Decimal(value) * MICRO) < 0


@pytest.mark.parametrize("value", [0, "0", "0.000000", Decimal("-0")])
def test_parse_micros_rejects_zero_unless_allowed(value):
    with pytest.raises(AmountError, match="greater than zero"):
        parse_micros(value)
    assert parse_micros(value, allow_zero=True) == 0


@pytest.mark.parametrize("value", [0.5, 1.0, 0.1 + 0.2, True, False])
def test_floats_and_bools_are_never_amounts(value):
    with pytest.raises(AmountError, match="decimal number"):
        parse_micros(value, allow_zero=True)


@pytest.mark.parametrize("value", ["abc", "", "1,5", "NaN", "Infinity", "-inf", None, [1], {}])
def test_parse_micros_rejects_non_numbers(value):
    with pytest.raises(AmountError):
        parse_micros(value, allow_zero=True, allow_negative=True)


def test_parse_micros_is_exact_up_to_what_the_database_holds():
    assert parse_micros(Decimal(MAX_MICROS).scaleb(-6)) == MAX_MICROS
    assert parse_micros(-Decimal(MAX_MICROS).scaleb(-6), allow_negative=True) == -MAX_MICROS


@pytest.mark.parametrize(
    "value", [10**30, "1e30", Decimal(MAX_MICROS + 1).scaleb(-6), "-1e40", "9" * 60 + ".5"]
)
def test_parse_micros_refuses_huge_values_as_amount_errors(value):
    with pytest.raises(AmountError, match="too large"):
        parse_micros(value, allow_negative=True)


def test_to_decimal_keeps_the_exact_value():
    assert to_decimal("0.1") + to_decimal("0.2") == Decimal("0.3")


@pytest.mark.parametrize(
    ("unit_price", "quantity"),
    [
        ("5", "1"),
        ("0.001", "3"),
        ("0.000001", "0.5"),  # exactly half a micro-credit: rounds up
        ("0.000003", "0.499999"),  # just under half of 3: rounds down to 1
        ("0.000003", "0.5"),  # 1.5 micro-credits -> 2
        ("2.5", "1000000"),
        ("0.333333", "3"),
        ("1.234567", "7.654321"),
    ],
)
def test_cost_micros_rounds_half_up_to_six_places(unit_price, quantity):
    expected = (Decimal(unit_price) * Decimal(quantity)).quantize(
        Decimal("0.000001"), rounding=ROUND_HALF_UP
    )
    assert cost_micros(micros_of(unit_price), micros_of(quantity)) == micros_of(str(expected))


@pytest.mark.parametrize(
    ("unit_price", "quantity"),
    [
        ("0.000001", "0.1"),  # a tenth of a micro-credit
        ("0.000001", "0.499999"),  # just under half
        ("0.000001", "0.000001"),  # a trillionth of a credit
        ("0.000002", "0.2"),
    ],
)
def test_a_non_zero_cost_never_rounds_to_zero(unit_price, quantity):
    assert cost_micros(micros_of(unit_price), micros_of(quantity)) == 1


@pytest.mark.parametrize(("unit_price", "quantity"), [("0", "5"), ("5", "0"), ("0", "0")])
def test_only_a_zero_price_or_quantity_costs_nothing(unit_price, quantity):
    assert cost_micros(micros_of(unit_price), micros_of(quantity)) == 0


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "0"),
        (1, "0.000001"),
        (10, "0.00001"),
        (500_000, "0.5"),
        (MICRO, "1"),
        (100 * MICRO, "100"),
        (994_997_000, "994.997"),
        (-1_500_000, "-1.5"),
        (-1, "-0.000001"),
        (10**24 * MICRO, "1" + "0" * 24),
    ],
)
def test_micros_to_decimal_has_no_exponent_or_trailing_zeros(micros, text):
    value = micros_to_decimal(micros)
    assert str(value) == text
    assert value == Decimal(micros) / MICRO


@pytest.mark.parametrize(
    ("micros", "places", "text"),
    [
        (1_234_567_500_000, None, "1,234,567.5"),
        (1_500_000, 2, "1.50"),
        (5_000, 2, "0.01"),  # 0.005 rounds half-up
        (0, None, "0"),
    ],
)
def test_format_credits(micros, places, text):
    assert format_credits(micros, places) == text


# --- amounts typed by people -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1234.5", 1_234_500_000),
        ("1,234.5", 1_234_500_000),
        ("12,345,678.25", 12_345_678_250_000),
        ("1,000", 1_000 * MICRO),
        ("999", 999 * MICRO),
        ("0", 0),
        ("0.5", 500_000),
        ("0.000001", 1),
        ("007", 7 * MICRO),
        ("  7.25\t", 7_250_000),
        ("9223372036854.775807", MAX_MICROS),  # what a BIGINT holds, exactly
    ],
)
def test_typed_credits_accept_plain_and_correctly_grouped_decimals(text, micros):
    assert parse_typed_credits(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "2,5",  # a decimal comma, or a thousands separator? never guessed
        "9,90",
        "1,23,4",
        "1,2345",
        "12,34.5",
        "1234,567",  # a group after more than three digits
        "0,123",
        ",123",
        "1,",
        "1,000,00",
        "1_000",
        "1e3",
        "1E3",
        "+5",
        "−5",  # a Unicode minus
        ".5",
        "5.",
        "1.2.3",
        "1 000",
        "$5",
        "5 credits",
        "five",
        "NaN",
        "Infinity",
        "0x10",
        "5\x00",
        "\x005",
        "١٢٣",  # Arabic-Indic digits
        "１２",  # full-width digits
        "9" * 41,
    ],
)
def test_typed_credits_refuse_anything_else_and_say_what_to_type(text):
    with pytest.raises(TypedAmountError, match=r"Type an amount like 1234\.5 or 1,234\.5"):
        parse_typed_credits(text, allow_negative=True)


@pytest.mark.parametrize("text", ["", "   ", None])
def test_an_empty_typed_amount_asks_for_one(text):
    with pytest.raises(TypedAmountError, match="Enter an amount"):
        parse_typed_credits(text)


@pytest.mark.parametrize("text", ["0.0000001", "1.1234567", "1,234.5000000"])
def test_typed_credits_allow_six_places(text):
    with pytest.raises(TypedAmountError, match="at most 6 decimal places"):
        parse_typed_credits(text)


def test_typed_credits_sign_zero_and_range():
    assert parse_typed_credits("-12.5", allow_negative=True) == -12_500_000
    assert parse_typed_credits("-1,234", allow_negative=True) == -1_234 * MICRO
    with pytest.raises(TypedAmountError, match="must not be negative"):
        parse_typed_credits("-1")
    with pytest.raises(TypedAmountError, match="greater than zero"):
        parse_typed_credits("0.000", allow_zero=False)
    with pytest.raises(TypedAmountError, match=r"at most 9,223,372,036,854\.775807"):
        parse_typed_credits("9223372036854.775808")
    with pytest.raises(TypedAmountError, match="at most 10"):
        parse_typed_credits("10.000001", maximum=10 * MICRO)


@pytest.mark.parametrize(
    ("text", "cents"),
    [("9.90", 990), ("29", 2900), ("0.5", 50), ("1,499.90", 149_990), ("1,000,000", 10**8)],
)
def test_typed_currency_is_whole_units_to_integer_cents(text, cents):
    assert parse_typed_currency(text, maximum=10**8) == cents


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9,90", r"Type an amount like 1234\.50 or 1,234\.50"),
        ("2,5", r"Type an amount like 1234\.50"),
        ("9.999", "at most 2 decimal places"),
        ("0.001", "at most 2 decimal places"),
        ("-9.90", "must not be negative"),
        ("1e3", "Type an amount"),
        ("1_000", "Type an amount"),
        ("1,000,000.01", r"at most 1,000,000"),
    ],
)
def test_typed_currency_refusals(text, message):
    with pytest.raises(TypedAmountError, match=message):
        parse_typed_currency(text, maximum=10**8)
