"""What a page does wrong in the browser: CSP violations, console errors, failed loads, width."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

PHONE = {"width": 390, "height": 844}
# Recorded before any page script runs (init scripts are not subject to the page's CSP).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`);
});
"""
DOCUMENT_STATUS_ERROR = "Failed to load resource: the server responded with a status of"


@dataclass
class Watch:
    """Listens on one page; ``visit`` returns every problem of one navigation."""

    page: object
    problems: list[str] = field(default_factory=list)
    error_documents: set[str] = field(default_factory=set)  # URLs of 4xx/5xx pages we opened

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        self.page.on("requestfailed", self._failed)
        self.page.on("response", self._response)

    def _console(self, message) -> None:
        if message.type not in ("error", "warning"):
            return
        # The document's own 4xx (an error page we asked for) is logged like a failed load.
        if message.text.startswith(DOCUMENT_STATUS_ERROR) and (
            message.location.get("url") in self.error_documents
        ):
            return
        self.problems.append(f"console {message.type}: {message.text}")

    def _failed(self, request) -> None:
        # ERR_ABORTED: the next navigation cancelled a load still under way (the favicon,
        # say); the server did not fail it.
        if "ERR_ABORTED" not in (request.failure or ""):
            self.problems.append(f"failed to load {request.url}: {request.failure}")

    def _response(self, response) -> None:
        if response.status < 400:
            return
        if response.request.resource_type == "document":
            self.error_documents.add(response.url)
        else:
            self.problems.append(f"subresource {response.url} answered {response.status}")

    def redirects(self, url: str) -> bool:
        """Whether ``url`` only redirects (asked without a browser navigation, same cookies)."""
        response = self.page.context.request.get(url, max_redirects=0)
        return 300 <= response.status < 400

    def visit(self, url: str, *, max_width: int | None = PHONE["width"]) -> tuple[int, list[str]]:
        self.problems = []
        response = self.page.goto(url, wait_until="load")
        return response.status if response else 0, self.check(max_width)

    def check(self, max_width: int | None = PHONE["width"]) -> list[str]:
        """The problems so far on the current document (after a click, a swap…)."""
        found = list(self.problems)
        found += [f"CSP: {v}" for v in self.page.evaluate("window.__cspViolations || []")]
        # An htmx partial opened on its own has no stylesheet, so no layout to judge: its
        # layout is checked where it is swapped in.
        fragment = self.page.evaluate("!document.querySelector('link[rel=stylesheet]')")
        if max_width is not None and not fragment:
            width = self.page.evaluate("document.documentElement.scrollWidth")
            if width > max_width:
                found.append(f"document is {width} px wide at a {max_width} px viewport")
        return found


@contextmanager
def watched_page(browser, viewport: dict[str, int], storage_state: str | None) -> Iterator[Watch]:
    """A fresh context (one role's saved login, or none) with one watched page."""
    context = browser.new_context(viewport=viewport, storage_state=storage_state)
    context.add_init_script(RECORD_VIOLATIONS)
    try:
        yield Watch(context.new_page())
    finally:
        context.close()
