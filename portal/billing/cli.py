"""``flask stripe sync``: mirror the catalogue in Stripe (or the sandbox) by lookup key.

The ``stripe`` command group belongs to the sandbox (``portal.stripe_sandbox.cli``), which
adds ``advance`` and ``deliver``; ``sync`` joins it. Without that module (a trimmed install),
the group is made here the same idempotent way.
"""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext

from portal.billing import gateway, sync


def _stripe_group(app: Flask) -> click.Group:
    try:
        from portal.stripe_sandbox.cli import stripe_cli_group
    except ImportError:
        existing = app.cli.commands.get("stripe")
        if isinstance(existing, click.Group):
            return existing
        group = AppGroup("stripe", help="Stripe: catalogue sync (and the offline sandbox).")
        app.cli.add_command(group)
        return group
    return stripe_cli_group(app)


@click.command("sync")
@with_appcontext
def sync_command() -> None:
    """Create or update Stripe products and prices for every plan and package (idempotent)."""
    where = f"the sandbox at {gateway.base_url()}_stripe" if gateway.sandbox_mode() else "Stripe"
    click.echo(f"Syncing the catalogue with {where}:")
    for result in sync.sync_catalogue():
        click.echo(
            f"  {result.lookup_key:<20} {result.action:<10} "
            f"{result.product_id}  {result.price_id or '-'}"
        )


def register_billing_commands(app: Flask) -> None:
    _stripe_group(app).add_command(sync_command)
