"""Money passes through here: decimal credits in, integer micro-credits stored, decimals out.

1 credit = 1,000,000 micro-credits. No float ever touches an amount: JSON bodies are parsed
with ``Decimal`` for non-integers, and JSON responses render ``Decimal`` as a plain number.
"""

from __future__ import annotations

import re
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


# --- amounts typed by people ------------------------------------------------------------------

# Digits with an optional point, or digits grouped in threes by commas ("12,345,678.25"). ASCII
# digits only: ``\d`` would also take Arabic-Indic and other digits.
_TYPED = re.compile(r"(-?)((?:[1-9][0-9]{0,2}(?:,[0-9]{3})+)|[0-9]+)(?:\.([0-9]+))?", re.ASCII)
# Longer than any amount a column holds: refused before the pattern even looks at it.
_MAX_TYPED_LENGTH = 40
CREDIT_EXAMPLE = ("1234.5", "1,234.5")
CURRENCY_PLACES = 2
CURRENCY_EXAMPLE = ("1234.50", "1,234.50")


class TypedAmountError(AmountError):
    """A typed amount that is not one; the message is a sentence telling what to type."""


def parse_typed(
    text: str | None,
    *,
    places: int,
    allow_negative: bool = False,
    allow_zero: bool = True,
    maximum: int = MAX_MICROS,
    example: tuple[str, str] = CREDIT_EXAMPLE,
) -> int:
    """An amount a person typed, in integer units of ``10**-places`` (micro-credits, cents).

    The one parser of every human-typed amount: ``1234.5`` or, grouped correctly in threes,
    ``1,234.5``. Anything that could be read two ways is refused, never guessed: ``2,5`` and
    ``9,90`` (a decimal comma, or a thousands separator?), ``1,23,4``, ``1_000``, ``1e3``,
    ``+5``, ``.5``, a currency sign, more places than allowed. Surrounding spaces are ignored.
    """
    plain, grouped = example
    hint = f"Type an amount like {plain} or {grouped}"
    raw = (text or "").strip(" \t\r\n")
    if not raw:
        raise TypedAmountError(f"Enter an amount, like {plain}.")
    match = _TYPED.fullmatch(raw) if len(raw) <= _MAX_TYPED_LENGTH else None
    if match is None:
        why = " (a point for decimals; commas only between groups of three digits)"
        raise TypedAmountError(hint + why + ".")
    sign, whole, fraction = match.group(1), match.group(2), match.group(3) or ""
    if len(fraction) > places:
        raise TypedAmountError(f"Use at most {places} decimal places, like {plain} or {grouped}.")
    units = int(whole.replace(",", "")) * 10**places + int(fraction.ljust(places, "0") or 0)
    if sign and units and not allow_negative:
        raise TypedAmountError(f"The amount must not be negative. {hint}.")
    if sign:
        units = -units
    if units == 0 and not allow_zero:
        raise TypedAmountError("The amount must be greater than zero.")
    if abs(units) > maximum:
        limit = _units_text(maximum, places)
        raise TypedAmountError(f"The amount must be at most {limit}.")
    return units


def _units_text(units: int, places: int) -> str:
    whole, fraction = divmod(units, 10**places)
    text = f"{whole:,}"
    tail = f"{fraction:0{places}d}".rstrip("0") if places else ""
    return f"{text}.{tail}" if tail else text


def parse_typed_credits(
    text: str | None,
    *,
    allow_negative: bool = False,
    allow_zero: bool = True,
    maximum: int = MAX_MICROS,
) -> int:
    """Credits typed in a form or on the command line (≤ 6 places), as micro-credits."""
    return parse_typed(
        text,
        places=PLACES,
        allow_negative=allow_negative,
        allow_zero=allow_zero,
        maximum=maximum,
    )


def parse_typed_currency(text: str | None, *, maximum: int) -> int:
    """A price typed in the currency's units (``9.90``, never cents), as integer cents."""
    return parse_typed(
        text, places=CURRENCY_PLACES, allow_zero=True, maximum=maximum, example=CURRENCY_EXAMPLE
    )


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
    """Price × quantity, both in micro-units, rounded half-up to a whole micro-credit.

    A non-zero cost is never rounded to zero: below half a micro-credit it costs 1, so a
    priced feature cannot be used for free by sending small quantities. Only a free feature
    or a zero quantity costs nothing.
    """
    product = unit_price_micros * quantity_micros
    whole, remainder = divmod(product, MICRO)
    cost = whole + (1 if remainder * 2 >= MICRO else 0)
    return 1 if cost == 0 and product > 0 else cost
