"""Token pricing of AI calls: model names to feature keys, token counts to quantities.

A model's input and output tokens are priced per thousand by two feature keys,
``<model>_input_1k_tokens`` and ``<model>_output_1k_tokens``, with the model name normalised to
``lowercase_with_underscores`` ("Claude-3.5-Sonnet" → ``claude_3_5_sonnet``). The two lines go
out as one ``deduct-batch`` call, so a call is charged for both or for neither.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from portal.client.results import DeductLine

_NOT_KEY_CHARS = re.compile(r"[^a-z0-9]+")
_SIX_PLACES = Decimal("0.000001")

# (input_tokens, output_tokens); None where a chunk does not say.
TokenCounts = tuple[int | None, int | None]
UsageExtractor = Callable[[Any], TokenCounts | None]


def normalize_model(model: str) -> str:
    """``"Claude-3.5-Sonnet"`` → ``"claude_3_5_sonnet"``: a valid part of a feature key."""
    key = _NOT_KEY_CHARS.sub("_", model.strip().lower()).strip("_")
    if not key:
        raise ValueError(f"model name {model!r} has no letters or digits")
    return key


def input_feature_key(model: str) -> str:
    return f"{normalize_model(model)}_input_1k_tokens"


def output_feature_key(model: str) -> str:
    return f"{normalize_model(model)}_output_1k_tokens"


def _token_count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{field} must not be negative")
    return value


def thousands(tokens: int) -> Decimal:
    """Tokens as a quantity of thousands, exact to 6 places (1234 → 1.234)."""
    quantity = (Decimal(tokens) / 1000).quantize(_SIX_PLACES, rounding=ROUND_HALF_UP)
    whole = quantity.to_integral_value()
    # normalize() would turn 10.000000 into 1E+1; keep whole numbers plain.
    return whole if quantity == whole else quantity.normalize()


def token_lines(
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    department: str | None = None,
    user: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[DeductLine]:
    """The batch lines of one AI call; a side with no tokens gets no line (quantities are > 0)."""
    counts = {
        input_feature_key(model): _token_count(input_tokens, "input_tokens"),
        output_feature_key(model): _token_count(output_tokens, "output_tokens"),
    }
    return [
        DeductLine(
            feature_key,
            thousands(tokens),
            department=department,
            user=user,
            description=description,
            metadata=metadata,
        )
        for feature_key, tokens in counts.items()
        if tokens > 0
    ]


# --- reading usage out of streamed chunks -----------------------------------------------------


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _first_int(obj: Any, *names: str) -> int | None:
    for name in names:
        value = _field(obj, name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def default_usage(chunk: Any) -> TokenCounts | None:
    """Token counts of a chunk that has ``usage`` (object or dict), the way common SDKs stream.

    Reads ``usage.input_tokens`` / ``usage.output_tokens`` (Anthropic-style; also found under
    ``message.usage`` on a ``message_start`` event) or ``prompt_tokens`` / ``completion_tokens``
    (OpenAI-style). Chunks without usage return None.
    """
    usage = _field(chunk, "usage")
    if usage is None:
        message = _field(chunk, "message")
        usage = None if message is None else _field(message, "usage")
    if usage is None:
        return None
    counts = (
        _first_int(usage, "input_tokens", "prompt_tokens"),
        _first_int(usage, "output_tokens", "completion_tokens"),
    )
    return None if counts == (None, None) else counts


@dataclass
class TokenMeter:
    """Accumulates token counts over a stream.

    With ``cumulative=True`` (the default) each report is a running total, as Anthropic's and
    OpenAI's streams send them, so the largest value seen wins; with ``cumulative=False`` each
    report is a delta and they add up.
    """

    extractor: UsageExtractor = default_usage
    cumulative: bool = True
    input_tokens: int = 0
    output_tokens: int = 0

    def observe(self, chunk: Any) -> None:
        counts = self.extractor(chunk)
        if counts is None:
            return
        seen_in, seen_out = counts
        combine = max if self.cumulative else (lambda total, new: total + new)
        if seen_in is not None:
            self.input_tokens = combine(self.input_tokens, _token_count(seen_in, "input_tokens"))
        if seen_out is not None:
            self.output_tokens = combine(
                self.output_tokens, _token_count(seen_out, "output_tokens")
            )
