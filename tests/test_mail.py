"""Outgoing mail: SMTP when configured, the log when not; links absolute; sent after commit."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from portal import mail
from portal.auth.models import AccountToken
from portal.extensions import db
from tests.live import free_port
from tests.mail_helpers import html_body, link, text_body


def test_smtp_message_has_text_and_html_bodies_and_the_sender(app, mailbox):
    app.config["MAIL_DEFAULT_SENDER"] = "Portal <portal@example.com>"
    message = mail.compose(
        "ana@example.com", "Reset your password", "reset_password", url="http://x/reset-password/t"
    )
    assert mail.send([message]) == 1
    received = mailbox.last("ana@example.com")
    assert received["From"] == "Portal <portal@example.com>"
    assert received["Subject"] == "Reset your password"
    assert "http://x/reset-password/t" in text_body(received)
    assert 'href="http://x/reset-password/t"' in html_body(received)


def test_without_mail_server_the_message_and_its_link_go_to_the_log(app, client, make_user, caplog):
    assert app.config["MAIL_SERVER"] is None
    assert app.config["MAIL_BACKEND"] == "portal.mail.LoggingEmailBackend"
    make_user("me@example.com")
    with caplog.at_level(logging.INFO, logger="portal.mail"):
        assert client.post("/forgot-password", data={"email": "me@example.com"}).status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "portal.mail")
    assert "To: me@example.com" in logged and "http://localhost/reset-password/" in logged


def test_links_use_portal_base_url_when_set(app, client, mailbox, make_user):
    app.config["PORTAL_BASE_URL"] = "https://credits.example.com/"
    make_user("me@example.com")
    client.post("/forgot-password", data={"email": "me@example.com"})
    assert "https://credits.example.com/reset-password/" in text_body(
        mailbox.last("me@example.com")
    )


def test_links_use_the_request_host_otherwise(app, client, mailbox, make_user):
    make_user("me@example.com")
    client.post(
        "/forgot-password", data={"email": "me@example.com"}, base_url="http://portal.test:8080"
    )
    body = text_body(mailbox.last("me@example.com"))
    assert "http://portal.test:8080/reset-password/" in body
    assert link(mailbox.last("me@example.com"), "/reset-password/").startswith("/reset-password/")


def test_a_failed_send_is_logged_and_the_committed_change_stands(app, client, make_user, caplog):
    from portal.mail import init_mail

    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=free_port(), MAIL_BACKEND="smtp")
    init_mail(app)  # nothing listens on that port
    make_user("me@example.com")
    with caplog.at_level(logging.ERROR, logger="portal.mail"):
        response = client.post("/forgot-password", data={"email": "me@example.com"})
    assert response.status_code == 200  # the same answer: the link can be asked for again
    assert "could not send" in caplog.text
    assert db.session.scalar(select(func.count()).select_from(AccountToken)) == 1
