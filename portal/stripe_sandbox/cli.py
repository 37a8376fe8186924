"""``flask stripe …``: one click group shared by billing (``sync``) and the sandbox.

``stripe_cli_group(app)`` is the meeting point: whoever registers first creates the group, the
other gets the same one, so neither module needs to know the other exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from flask import Flask

if TYPE_CHECKING:
    from portal.stripe_sandbox.delivery import DeliveryReport

GROUP_NAME = "stripe"


def stripe_cli_group(app: Flask) -> click.Group:
    """The app's ``flask stripe`` group, created on first call and returned ever after."""
    existing = app.cli.commands.get(GROUP_NAME)
    if isinstance(existing, click.Group):
        return existing

    @app.cli.group(GROUP_NAME)
    def stripe_group() -> None:
        """Stripe: catalogue sync, and the offline sandbox's clock and webhooks."""

    return stripe_group


def _echo_report(report: DeliveryReport) -> None:
    click.echo(
        f"Webhooks: {len(report.delivered)} delivered, {len(report.retrying)} to retry, "
        f"{len(report.failed)} given up."
    )


def register_sandbox_commands(app: Flask) -> None:
    group = stripe_cli_group(app)
    if "deliver" in group.commands:
        return

    @group.command("deliver")
    def deliver() -> None:
        """Deliver the sandbox's due webhooks now, once (the server's worker also does)."""
        from portal.stripe_sandbox.delivery import deliver_due

        _echo_report(deliver_due())

    @group.command("advance")
    @click.option("--days", type=click.IntRange(min=0), required=True, help="How far to move.")
    @click.option("--fail-payment", is_flag=True, help="Renewal charges fail (past due).")
    @click.option("--deliver", "deliver_now", is_flag=True, help="Deliver the webhooks now.")
    def advance(days: int, fail_payment: bool, deliver_now: bool) -> None:
        """Move the sandbox's test clock forward DAYS days and renew or end what is due."""
        from portal.stripe_sandbox.clock import DAY
        from portal.stripe_sandbox.clock import advance as advance_clock
        from portal.stripe_sandbox.delivery import deliver_due
        from portal.stripe_sandbox.display import format_date

        moved = advance_clock(days * DAY, fail_payment=fail_payment)
        click.echo(
            f"Sandbox clock: {format_date(moved.now)} (+{days} days); "
            f"{moved.renewals} renewal(s), {moved.recovered} open invoice(s) paid."
        )
        if deliver_now:
            _echo_report(deliver_due())
