"""Documents as the API shows them: embedded prices kept current, hidden fields, ``expand``.

Stripe embeds a price inside subscription items, invoice lines and checkout line items by
reference: a later change to the price (its lookup key moved away, say) shows everywhere. The
sandbox stores a copy and refreshes it here, the one place documents leave the store.
"""

from __future__ import annotations

import copy
from typing import Any

from portal.stripe_sandbox import store

# Fields Stripe leaves out unless asked for with ``expand[]``.
HIDDEN_UNLESS_EXPANDED = {"checkout.session": ("line_items",)}
# Where a type embeds prices: (list field, item field).
EMBEDDED_PRICES = {
    "subscription": ("items", "price"),
    "invoice": ("lines", "price"),
    "checkout.session": ("line_items", "price"),
}
MAX_EXPAND_DEPTH = 4


def render(data: dict[str, Any], expand: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    # Keys starting with "_" are the sandbox's private notes, never shown.
    out = {key: copy.deepcopy(value) for key, value in data.items() if not key.startswith("_")}
    kind = out.get("object")
    for field in HIDDEN_UNLESS_EXPANDED.get(kind, ()):
        if not any(path.split(".")[0] == field for path in expand):
            out.pop(field, None)
    if kind in EMBEDDED_PRICES:
        list_field, item_field = EMBEDDED_PRICES[kind]
        for item in (out.get(list_field) or {}).get("data", []):
            _refresh_price(item, item_field)
    for path in expand:
        parts = path.split(".")
        if len(parts) <= MAX_EXPAND_DEPTH:
            _expand(out, parts)
    return out


def _refresh_price(item: dict[str, Any], field: str) -> None:
    price = item.get(field)
    if isinstance(price, dict) and price.get("id"):
        row = store.find(price["id"])
        if row is not None:
            item[field] = copy.deepcopy(row.data)
    # Newer API versions also name the price under ``pricing.price_details``.
    details = (item.get("pricing") or {}).get("price_details")
    if details and isinstance(item.get(field), dict):
        details["price"] = item[field]["id"]


def _expand(node: Any, parts: list[str]) -> Any:
    if not parts or not isinstance(node, dict):
        return node
    key, rest = parts[0], parts[1:]
    if key == "data" and node.get("object") == "list":
        node["data"] = [_expand(item, rest) for item in node["data"]]
        return node
    value = node.get(key)
    if isinstance(value, str):
        row = store.find(value)
        if row is None:
            return node
        value = render(row.data)
    if isinstance(value, dict):
        node[key] = _expand(value, rest)
    return node


def render_list(rows: list[Any], url: str, has_more: bool, expand: list[str]) -> dict[str, Any]:
    """A list page; ``expand[]=data.product`` expands inside each item, as in Stripe."""
    inner = [path.removeprefix("data.") for path in expand if path.startswith("data.")]
    return store.list_object([render(row.data, inner) for row in rows], url, has_more)
