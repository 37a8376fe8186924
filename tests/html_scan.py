"""Read rendered HTML the way a browser would, to find what a strict CSP would block."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

# An attribute that runs code or styles the page inline: on*="…", hx-on*, style="…".
INLINE_ATTRIBUTE = re.compile(r"^(on[a-z]+|hx-on.*|style)$")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]


@dataclass
class Scan(HTMLParser):
    elements: list[Element] = field(default_factory=list)
    inline_blocks: list[str] = field(default_factory=list)  # <script> without src, <style>

    def __post_init__(self) -> None:
        HTMLParser.__init__(self, convert_charrefs=True)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.elements.append(Element(tag, values))
        if (tag == "script" and "src" not in values) or tag == "style":
            self.inline_blocks.append(tag)


def scan(html: str) -> Scan:
    parsed = Scan()
    parsed.feed(html)
    parsed.close()
    return parsed


def inline_code(html: str) -> list[str]:
    """Everything in ``html`` that a CSP without 'unsafe-inline' would refuse to run."""
    parsed = scan(html)
    found = [f"<{tag}> block" for tag in parsed.inline_blocks]
    for element in parsed.elements:
        for name, value in element.attrs.items():
            if INLINE_ATTRIBUTE.match(name) or value.strip().lower().startswith("javascript:"):
                found.append(f"<{element.tag} {name}={value!r}>")
    return found


def confirmations(html: str) -> list[str]:
    """The (unescaped) text of every ``data-confirm`` attribute on the page."""
    return [e.attrs["data-confirm"] for e in scan(html).elements if "data-confirm" in e.attrs]
