"""Operator commands: ``flask org|apikey|pricing|credits …`` and ``flask demo``."""

from __future__ import annotations

import click
from flask import Flask

from portal.contract.fields import Moment
from portal.credits import apikeys, idempotency, manual, organizations, pricing, service
from portal.errors import PortalError
from portal.money import MICRO, AmountError, format_credits, parse_typed_credits

EXPIRES_AT = Moment("When the credits expire.")


def _micros(value: str, *, allow_negative: bool = False, allow_zero: bool = True) -> int:
    """Credits typed on the command line: the same parser as every form (``9,90`` is refused)."""
    try:
        return parse_typed_credits(value, allow_negative=allow_negative, allow_zero=allow_zero)
    except AmountError as exc:
        raise click.BadParameter(str(exc)) from None


def _fail_on_portal_error(exc: PortalError) -> None:
    raise click.ClickException(exc.message)


def _fail_with_option_names(exc: PortalError) -> None:
    """A field error named as the option it came from: ``--expires-at: must be …``."""
    field = exc.extra.get("field")
    if field and field != "amount" and exc.message.startswith(f"{field}: "):
        option = "--" + field.replace("_", "-")
        raise click.ClickException(option + exc.message.removeprefix(field))
    _fail_on_portal_error(exc)


def register_credits_commands(app: Flask) -> None:
    @app.cli.group("org")
    def org() -> None:
        """Organizations."""

    @org.command("create")
    @click.argument("slug")
    @click.option("--name", default=None, help="Display name (defaults to the slug).")
    @click.option("--credits", "credits_", default="0", help="Opening balance in credits.")
    def org_create(slug: str, name: str | None, credits_: str) -> None:
        """Create organization SLUG."""
        try:
            organization = organizations.create_organization(slug, name, _micros(credits_))
        except PortalError as exc:
            _fail_on_portal_error(exc)
        click.echo(
            f"Created organization {organization.slug} "
            f"with {format_credits(organization.balance)} credits."
        )

    @app.cli.group("apikey")
    def apikey() -> None:
        """API keys."""

    @apikey.command("create")
    @click.argument("slug")
    @click.option("--name", default="CLI key", help="A label to recognise the key by.")
    def apikey_create(slug: str, name: str) -> None:
        """Create an API key for SLUG; the secret is printed once, alone on the last line."""
        try:
            organization = organizations.get_by_slug(slug)
        except PortalError as exc:
            _fail_on_portal_error(exc)
        new = apikeys.create_api_key(organization.id, name)
        click.echo(f"API key '{new.key.name}' ({new.key.prefix}…) for {slug}; store it now:")
        click.echo(new.secret)

    @app.cli.group("pricing")
    def pricing_group() -> None:
        """Feature prices."""

    @pricing_group.command("set")
    @click.argument("key")
    @click.option("--credits", "credits_", required=True, help="Credits per unit, e.g. 0.5.")
    @click.option("--name", default=None)
    @click.option("--category", default=None)
    @click.option("--unit", default=None, help="call, 1k_tokens, mb, …")
    @click.option("--description", default=None)
    @click.option("--inactive", is_flag=True, help="Price it but refuse deducts for now.")
    def pricing_set(
        key: str,
        credits_: str,
        name: str | None,
        category: str | None,
        unit: str | None,
        description: str | None,
        inactive: bool,
    ) -> None:
        """Create or update the price of feature KEY."""
        spec = pricing.PriceSpec(
            key, _micros(credits_), name, category, unit, description, active=not inactive
        )
        try:
            price = pricing.set_price(spec)
        except PortalError as exc:
            _fail_on_portal_error(exc)
        state = "active" if price.active else "inactive"
        click.echo(
            f"{price.feature_key}: {format_credits(price.credits_per_unit)} credits "
            f"per {price.unit} ({state})"
        )

    @app.cli.group("credits")
    def credits_group() -> None:
        """Balances and grants."""

    # ignore_unknown_options lets a negative AMOUNT ("-5") be read as the argument it is.
    @credits_group.command("grant", context_settings={"ignore_unknown_options": True})
    @click.argument("slug")
    @click.argument("amount")
    @click.option("--reason", required=True, help="Why; shown in the ledger.")
    @click.option(
        "--expires-in-days", type=int, default=None, help="Expire N days from now (1-3650)."
    )
    @click.option(
        "--expires-at",
        default=None,
        help="Expire at this moment: an ISO 8601 date or datetime (UTC unless it says).",
    )
    @click.option(
        "--priority",
        type=int,
        default=None,
        help="Burn order, 0-1000, lower first (default 10: before plan and bought credits).",
    )
    def credits_grant(
        slug: str,
        amount: str,
        reason: str,
        expires_in_days: int | None,
        expires_at: str | None,
        priority: int | None,
    ) -> None:
        """Grant AMOUNT credits to SLUG (a negative AMOUNT is an adjustment that takes them in
        burn order). Without an expiry option the credits never expire."""
        micros = _micros(amount, allow_negative=True, allow_zero=False)
        try:
            moment = None if expires_at is None else EXPIRES_AT.parse(expires_at, "expires_at")
            request = manual.ManualGrant(
                micros, reason, expires_in_days, expires_at=moment, priority=priority
            )
            organization = organizations.get_by_slug(slug)
            granted = manual.give(organization.id, request)
            balance = service.get_balance(organization)
        except PortalError as exc:
            _fail_with_option_names(exc)
        if granted.grant_id is None:
            click.echo(f"{slug}: took {format_credits(-micros)} credits (adjustment).")
        else:
            grant = manual.granted_json(granted)
            expiry = f"expires {grant['expires_at']}" if grant["expires_at"] else "never expires"
            click.echo(
                f"{slug}: granted {format_credits(micros)} credits (grant #{granted.grant_id}, "
                f"priority {grant['priority']}, {expiry})."
            )
        click.echo(f"{slug}: balance {format_credits(balance.balance)} credits.")

    @credits_group.command("expire")
    def credits_expire() -> None:
        """Expire every grant whose time has come, in every organization (run it from cron;
        balances are correct without it, since every read and debit expires lazily)."""
        expired = service.expire_due_by_organization()
        total, organizations_count = sum(expired.values()), len(expired)
        click.echo(
            f"Expired {format_credits(total)} credit{'' if total == MICRO else 's'} in "
            f"{organizations_count} organization{'' if organizations_count == 1 else 's'}."
        )

    @credits_group.command("purge-idempotency")
    @click.option("--older-than-hours", default=48, show_default=True, type=int)
    def purge(older_than_hours: int) -> None:
        """Delete idempotency records past retention (never younger than 24 hours)."""
        from datetime import timedelta

        removed = idempotency.purge_expired(timedelta(hours=older_than_hours))
        click.echo(f"Removed {removed} idempotency records.")
