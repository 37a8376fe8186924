"""Stripe's form encoding (``a[b][0][c]=v``) decoded into a tree, and typed readers over it.

The readers raise Stripe's own messages ("Missing required param", "Received unknown
parameter"), so a portal that strays outside the sandbox's subset learns it at once instead of
having a parameter silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from portal.stripe_sandbox.errors import SandboxError

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
METADATA_LIMIT = 50


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest ``a[b][c]=v`` pairs; ``a[]`` appends; ``a[0]`` lists stay digit-keyed until read."""
    tree: dict[str, Any] = {}
    for raw_key, value in pairs:
        match = _KEY.match(raw_key)
        if not match:
            raise SandboxError(f"Invalid parameter name: {raw_key}", param=raw_key)
        parts = [match.group(1), *_PART.findall(match.group(2))]
        node: Any = tree
        for position, part in enumerate(parts):
            last = position == len(parts) - 1
            if part == "":
                if not isinstance(node, list):
                    raise SandboxError(f"Invalid array parameter: {raw_key}", param=raw_key)
                if last:
                    node.append(value)
                else:
                    node.append({})
                    node = node[-1]
                continue
            if not isinstance(node, dict):
                raise SandboxError(f"Invalid parameter: {raw_key}", param=raw_key)
            if last:
                node[part] = value
            else:
                following_is_append = parts[position + 1] == ""
                node = node.setdefault(part, [] if following_is_append else {})
    return tree


def _as_list(value: Any, param: str) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and all(key.isdigit() for key in value):
        return [value[key] for key in sorted(value, key=int)]
    raise SandboxError(f"Invalid array: {param}", param=param)


class Params:
    """Typed, Stripe-worded access to one level of decoded parameters."""

    def __init__(self, tree: dict[str, Any], prefix: str = "") -> None:
        self.tree = tree
        self.prefix = prefix

    def path(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def allow(self, *known: str) -> Params:
        """Refuse any parameter the sandbox does not implement, as Stripe refuses unknown ones."""
        for key in self.tree:
            if key not in known and key != "expand":
                raise SandboxError(
                    f"Received unknown parameter: {self.path(key)} "
                    "(the offline sandbox implements a subset: see docs/billing-design.md)",
                    param=self.path(key),
                )
        return self

    def has(self, key: str) -> bool:
        return key in self.tree

    def string(
        self, key: str, *, required: bool = False, choices: tuple[str, ...] = ()
    ) -> str | None:
        value = self.tree.get(key)
        if value is None or value == "":
            if required:
                raise SandboxError(f"Missing required param: {self.path(key)}.", param=key)
            return None
        if not isinstance(value, str):
            raise SandboxError(f"Invalid string: {self.path(key)}", param=self.path(key))
        if choices and value not in choices:
            raise SandboxError(
                f"Invalid {self.path(key)}: must be one of {', '.join(choices)}",
                param=self.path(key),
            )
        return value

    def integer(self, key: str, *, required: bool = False, minimum: int = 0) -> int | None:
        raw = self.string(key, required=required)
        if raw is None:
            return None
        if not re.fullmatch(r"-?\d+", raw) or int(raw) < minimum:
            raise SandboxError(f"Invalid integer: {raw}", param=self.path(key))
        return int(raw)

    def boolean(self, key: str) -> bool | None:
        raw = self.string(key)
        if raw is None:
            return None
        if raw not in ("true", "false"):
            raise SandboxError(f"Invalid boolean: {raw}", param=self.path(key))
        return raw == "true"

    def sub(self, key: str) -> Params:
        value = self.tree.get(key, {})
        if value == "":
            value = {}
        if not isinstance(value, dict):
            raise SandboxError(f"Invalid object: {self.path(key)}", param=self.path(key))
        return Params(value, self.path(key))

    def items(self, key: str) -> list[Params]:
        raw = self.tree.get(key)
        if raw is None:
            return []
        found = []
        for index, value in enumerate(_as_list(raw, self.path(key))):
            if not isinstance(value, dict):
                raise SandboxError(f"Invalid object: {self.path(key)}[{index}]", param=key)
            found.append(Params(value, f"{self.path(key)}[{index}]"))
        return found

    def strings(self, key: str) -> list[str] | None:
        raw = self.tree.get(key)
        if raw is None:
            return None
        values = _as_list(raw, self.path(key)) if not isinstance(raw, str) else [raw]
        if not all(isinstance(value, str) for value in values):
            raise SandboxError(f"Invalid array: {self.path(key)}", param=self.path(key))
        return values

    def metadata(self, key: str = "metadata") -> dict[str, str] | None:
        """Metadata as sent; an empty value means "unset this key" on updates, as in Stripe."""
        raw = self.tree.get(key)
        if raw is None:
            return None
        if raw == "":
            return {}
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise SandboxError(f"Invalid {key}: a map of strings", param=key)
        if len(raw) > METADATA_LIMIT:
            raise SandboxError(f"Invalid {key}: at most {METADATA_LIMIT} keys", param=key)
        for name, value in raw.items():
            if len(name) > 40 or len(value) > 500:
                raise SandboxError(f"Invalid {key}[{name}]: keys ≤ 40, values ≤ 500", param=key)
        return dict(raw)

    def expand(self) -> list[str]:
        return self.strings("expand") or []


def merge_metadata(current: dict[str, str], update: dict[str, str] | None) -> dict[str, str]:
    """Stripe's update rule: given keys are set, keys given as "" are removed, others stay."""
    if update is None:
        return current
    if update == {}:
        return {}
    merged = {**current, **update}
    return {key: value for key, value in merged.items() if value != ""}
