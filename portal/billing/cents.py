"""What customers pay, in integer cents: parsed from and shown as decimal amounts, never floats.

Credits are micro-credits and live in ``portal.money``; this is the other kind of money.
"""

from __future__ import annotations

from decimal import Decimal

from portal.money import AmountError, parse_typed_currency

SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}
MAX_CENTS = 100_000_000  # $1,000,000.00: far above any plan, far below a BIGINT


class CentsError(AmountError):
    """Not an acceptable price; the message is a sentence saying what to type."""


def parse_cents(text: str, *, minimum: int = 0, currency: str = "usd") -> int:
    """A price typed in the currency's units: ``"29"``, ``"9.90"``, ``"1,499.90"`` -> cents.

    Parsed by ``portal.money.parse_typed`` like every typed amount: ``9,90`` is refused, not
    read as 990.
    """
    try:
        cents = parse_typed_currency(text, maximum=MAX_CENTS)
    except AmountError as exc:
        raise CentsError(str(exc)) from None
    if cents < minimum:
        raise CentsError(f"The price must be at least {format_cents(minimum, currency)}.")
    return cents


def format_cents(cents: int, currency: str = "usd") -> str:
    """``2990`` -> ``$29.90``; other currencies get their code: ``29.90 CHF``."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    symbol = SYMBOLS.get(currency.lower())
    if symbol:
        return f"{sign}{symbol}{whole:,}.{frac:02d}"
    return f"{sign}{whole:,}.{frac:02d} {currency.upper()}"


def cents_input(cents: int) -> str:
    """The form value for an amount: ``2990`` -> ``29.90``."""
    whole, frac = divmod(cents, 100)
    return f"{whole}.{frac:02d}"


def per_credit(cents: int, credits_micros: int, currency: str = "usd") -> str:
    """The price of one credit, to a tenth of a cent: ``$0.0798``."""
    if credits_micros <= 0:
        return "—"
    value = (Decimal(cents) * 1_000_000 / 100 / Decimal(credits_micros)).quantize(Decimal("0.0001"))
    symbol = SYMBOLS.get(currency.lower())
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"
