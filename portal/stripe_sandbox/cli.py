"""``flask stripe …``: one click group shared by billing (``sync``) and the sandbox.

``stripe_cli_group(app)`` is the meeting point: whoever registers first creates the group, the
other gets the same one, so neither module needs to know the other exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from flask import Flask

if TYPE_CHECKING:
    from portal.stripe_sandbox.delivery import DeliveryReport

T = TypeVar("T")

GROUP_NAME = "stripe"


def stripe_cli_group(app: Flask) -> click.Group:
    """The app's ``flask stripe`` group, created on first call and returned ever after."""
    existing = app.cli.commands.get(GROUP_NAME)
    if isinstance(existing, click.Group):
        return existing

    @app.cli.group(GROUP_NAME)
    def stripe_group() -> None:
        """Stripe: catalogue sync, and the offline sandbox's clock, webhooks, refunds, disputes."""

    return stripe_group


def _echo_report(report: DeliveryReport) -> None:
    click.echo(
        f"Webhooks: {len(report.delivered)} delivered, {len(report.retrying)} to retry, "
        f"{len(report.failed)} given up."
    )


def _deliver_if(deliver_now: bool) -> None:
    if deliver_now:
        from portal.stripe_sandbox.delivery import deliver_due

        _echo_report(deliver_due())


def _run(operation: Callable[[], T]) -> T:
    """Run one sandbox operation and commit it; a Stripe error becomes a click error (exit 1)."""
    from portal.extensions import db
    from portal.stripe_sandbox.errors import SandboxError
    from portal.stripe_sandbox.events import commit

    try:
        result = operation()
        commit()
    except SandboxError as error:
        db.session.rollback()
        raise click.ClickException(error.message) from error
    return result


def _amount(obj: dict[str, Any]) -> str:
    from portal.stripe_sandbox.display import format_amount

    return format_amount(obj["amount"], obj["currency"])


def register_sandbox_commands(app: Flask) -> None:
    # Imported here, not at the top: billing imports this module for ``stripe_cli_group`` only.
    from portal.stripe_sandbox.disputes import OUTCOMES

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

    @group.command("refund")
    @click.argument("payment_intent")
    @click.option(
        "--amount", type=click.IntRange(min=1), help="Cents to refund (default: all that is left)."
    )
    @click.option("--deliver", "deliver_now", is_flag=True, help="Deliver the webhooks now.")
    def refund(payment_intent: str, amount: int | None, deliver_now: bool) -> None:
        """Refund PAYMENT_INTENT's charge as POST /v1/refunds does (emits charge.refunded)."""
        from portal.stripe_sandbox.params import Params
        from portal.stripe_sandbox.payments import refund as refund_charge

        fields = {"payment_intent": payment_intent}
        if amount is not None:
            fields["amount"] = str(amount)  # as the form-encoded API receives it
        made = _run(lambda: refund_charge(Params(fields)))
        click.echo(f"Refund {made['id']}: {_amount(made)} of {made['charge']}.")
        _deliver_if(deliver_now)

    @group.group("dispute")
    def dispute() -> None:
        """Disputes, opened by paying with card 4000 0000 0000 0259."""

    @dispute.command("list")
    def dispute_list() -> None:
        """Every dispute, newest first: id, charge, status, amount."""
        from portal.extensions import db
        from portal.stripe_sandbox.disputes import all_newest_first

        found = all_newest_first()
        db.session.rollback()  # end the read: on SQLite every transaction holds the write lock
        for item in found:
            click.echo(f"{item['id']}  {item['charge']}  {item['status']:<14}  {_amount(item)}")
        if not found:
            click.echo("No disputes.")

    @dispute.command("close")
    @click.argument("dispute_id", required=False)
    @click.option(
        "--outcome", type=click.Choice(OUTCOMES), required=True, help="The bank's decision."
    )
    @click.option("--deliver", "deliver_now", is_flag=True, help="Deliver the webhooks now.")
    def dispute_close(dispute_id: str | None, outcome: str, deliver_now: bool) -> None:
        """Close DISPUTE_ID (default: the newest open one) as won or lost.

        Emits charge.dispute.closed. At Stripe the bank decides; here you do.
        """
        from portal.stripe_sandbox import disputes
        from portal.stripe_sandbox.errors import SandboxError

        def close() -> dict[str, Any]:
            target = dispute_id or disputes.latest_open()
            if target is None:
                raise SandboxError("No open dispute: pay with 4000 0000 0000 0259 to open one.")
            return disputes.close(target, outcome)

        closed = _run(close)
        click.echo(f"Dispute {closed['id']} on {closed['charge']} ({_amount(closed)}): {outcome}.")
        _deliver_if(deliver_now)
