"""Outgoing email: rendered from templates, sent through SMTP (Flask-Mailman) after the commit.

With no ``MAIL_SERVER`` the message is written to the ``portal.mail`` log instead (the
``flask run`` console on a developer machine), links and all. Services build messages while
they work and call ``send`` only after their commit: a failed send is logged, never raised,
because the change it reports has already happened and the link can be asked for again.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, has_request_context, render_template, url_for
from flask_mailman import EmailMultiAlternatives, Mail
from flask_mailman.backends.base import BaseEmailBackend

log = logging.getLogger("portal.mail")
mail = Mail()


@dataclass(frozen=True)
class Email:
    """A message ready to send: ``templates/email/<template>.txt`` and ``.html``, rendered."""

    to: str
    subject: str
    text: str
    html: str


def compose(to: str, subject: str, template: str, **context: Any) -> Email:
    context = {"subject": subject, **context}
    return Email(
        to=to,
        subject=subject,
        text=render_template(f"email/{template}.txt", **context),
        html=render_template(f"email/{template}.html", **context),
    )


def send(messages: Iterable[Email]) -> int:
    """Send each message; log (and count out) the ones that fail. Call after the commit."""
    sent = 0
    for message in messages:
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=current_app.config.get("MAIL_DEFAULT_SENDER"),
            to=[message.to],
        )
        email.attach_alternative(message.html, "text/html")
        try:
            email.send()
        except Exception:  # SMTP refusals, timeouts, DNS: the change stands, the mail is lost
            log.exception("could not send %r to %s", message.subject, message.to)
        else:
            sent += 1
    return sent


def absolute_url(endpoint: str, **values: Any) -> str:
    """A link for an email: on ``PORTAL_BASE_URL`` when it is set, else on the request's host."""
    base = current_app.config.get("PORTAL_BASE_URL")
    if not has_request_context():  # a CLI command or a test: build on the base URL
        with current_app.test_request_context(base_url=base or "http://localhost"):
            return url_for(endpoint, _external=True, **values)
    if base:
        return base.rstrip("/") + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


class LoggingEmailBackend(BaseEmailBackend):
    """Writes each message to the ``portal.mail`` log: development without an SMTP server."""

    def send_messages(self, email_messages: list[EmailMultiAlternatives]) -> int:
        for message in email_messages:
            log.info(
                "email (not sent: MAIL_SERVER is unset)\nTo: %s\nSubject: %s\n\n%s",
                ", ".join(message.to),
                message.subject,
                message.body,
            )
        return len(email_messages)


def init_mail(app: Flask) -> None:
    mail.init_app(app)
    if app.config.get("MAIL_BACKEND", "").endswith("LoggingEmailBackend") and not log.handlers:
        # Flask's own logger shows warnings only; reset links are INFO and must reach the console.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    if app.config.get("PORTAL_ENV") == "production" and not app.config.get("MAIL_SERVER"):
        log.warning("MAIL_SERVER is unset: emails (with their links) go to this log, unsent")
