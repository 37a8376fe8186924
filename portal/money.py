"""Money passes through here: decimal credits in, integer micro-credits stored, decimals out.

1 credit = 1,000,000 micro-credits. No float ever touches an amount: JSON bodies are parsed
with ``Decimal`` for non-integers, and JSON responses render ``Decimal`` as a plain number.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICRO = 1_000_000
PLACES = 6
_QUANT = Decimal(1).scaleb(-PLACES)
# The most a BIGINT column holds; larger amounts are refused here instead of failing later.
MAX_MICROS = 2**63 - 1
_MAX_AMOUNT = Decimal(MAX_MICROS).scaleb(-PLACES)


class AmountError(ValueError):
    """A value that is not an acceptable amount; the message says why."""


def to_decimal(value: object) -> Decimal:
    """Coerce int / Decimal / numeric string to Decimal; reject floats, bools and the rest."""
    if isinstance(value, bool | float):
        raise AmountError("must be a decimal number")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise AmountError("must be a decimal number") from None
    else:
        raise AmountError("must be a number")
    if not result.is_finite():
        raise AmountError("must be a finite number")
    return result


def parse_micros(value: object, *, allow_zero: bool = False, allow_negative: bool = False) -> int:
    """Parse a decimal amount with at most 6 places into integer micro-units."""
    amount = to_decimal(value)
    if abs(amount) > _MAX_AMOUNT:
        raise AmountError(f"is too large (the limit is {_MAX_AMOUNT})")
    if amount != amount.quantize(_QUANT, rounding=ROUND_HALF_UP):
        raise AmountError(f"must have at most {PLACES} decimal places")
    if amount < 0 and not allow_negative:
        raise AmountError("must not be negative")
    if amount == 0 and not allow_zero:
        raise AmountError("must be greater than zero")
    return int(amount.scaleb(PLACES))


def micros_to_decimal(micros: int) -> Decimal:
    """Exact Decimal for display and JSON, without trailing zeros or exponent notation."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICRO)
    text = f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
    return Decimal(sign + text)


def format_credits(micros: int, places: int | None = None) -> str:
    """Human form with thousands separators: 1234567.5 credits -> '1,234,567.5'."""
    value = micros_to_decimal(micros)
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
        return f"{value:,.{places}f}"
    text = f"{value:,f}"
    return text


def cost_micros(unit_price_micros: int, quantity_micros: int) -> int:
    """Price × quantity, both in micro-units, rounded half-up to a whole micro-credit."""
    product = unit_price_micros * quantity_micros
    whole, remainder = divmod(product, MICRO)
    return whole + (1 if remainder * 2 >= MICRO else 0)
