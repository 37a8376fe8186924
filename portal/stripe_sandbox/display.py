"""Text for the hosted pages: Stripe amounts (integer minor units, never a float) and dates."""

from __future__ import annotations

from datetime import UTC, datetime

# Currencies Stripe counts in whole units (no cents).
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"}
    | {"pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}


def format_amount(amount: int, currency: str) -> str:
    """``2900, "usd"`` → ``$29.00``; unknown currencies get their code: ``29.00 CHF``."""
    currency = currency.lower()
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    number = f"{abs(amount):,}" if currency in ZERO_DECIMAL else f"{whole:,}.{cents:02d}"
    symbol = SYMBOLS.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency.upper()}"


def interval_text(recurring: dict | None) -> str:
    """``{"interval": "month", "interval_count": 1}`` → ``month``; 3 → ``3 months``."""
    if not recurring:
        return ""
    count = recurring.get("interval_count") or 1
    interval = recurring["interval"]
    return interval if count == 1 else f"{count} {interval}s"


def format_date(moment: int | None) -> str:
    """Unix seconds → ``23 Nov 2026`` (UTC), as Stripe's receipts show dates."""
    if moment is None:
        return "—"
    day = datetime.fromtimestamp(moment, UTC)
    return f"{day.day} {day:%b %Y}"
