"""A real SMTP server for tests (aiosmtpd on a free loopback port) and helpers to read it."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from urllib.parse import urlsplit

from aiosmtpd.controller import Controller

from tests.live import free_port

LINK = re.compile(r"https?://[^\s<>\"]+")


@dataclass
class Mailbox:
    """Every message the SMTP server accepted, parsed, oldest first."""

    messages: list[EmailMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.messages.append(message)  # type: ignore[arg-type]
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if address.lower() in m["To"].lower()]

    def last(self, address: str) -> EmailMessage:
        received = self.to(address)
        assert received, f"no email to {address}; got {[m['To'] for m in self.messages]}"
        return received[-1]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()


def text_body(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_body(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def link(message: EmailMessage, path_prefix: str) -> str:
    """The path (for the test client) of the link in the text body that starts with the prefix;
    the HTML body must carry the same link."""
    for url in LINK.findall(text_body(message)):
        parts = urlsplit(url)
        if parts.path.startswith(path_prefix):
            assert url in html_body(message), "the HTML body lacks the link of the text body"
            return parts.path + (f"?{parts.query}" if parts.query else "")
    raise AssertionError(f"no {path_prefix} link in:\n{text_body(message)}")


class SMTPServer:
    """aiosmtpd's Controller serving a ``Mailbox`` on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.mailbox = Mailbox()
        # aiosmtpd probes its own port once started, so it needs a concrete one, not 0.
        self.port = free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> SMTPServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
