"""``flask user create EMAIL --password PW [--admin] [--org SLUG]``."""

from __future__ import annotations

import click
from flask import Flask

from portal.auth import service
from portal.credits import organizations
from portal.errors import PortalError


def register_user_commands(app: Flask) -> None:
    @app.cli.group("user")
    def user() -> None:
        """People."""

    @user.command("create")
    @click.argument("email")
    @click.option(
        "--password", required=True, help="At least 10 characters, not a common password."
    )
    @click.option("--admin", is_flag=True, help="Platform admin (owns the admin area).")
    @click.option("--org", "org_slug", default=None, help="Make the user owner of this org.")
    @click.option(
        "--role",
        default="owner",
        type=click.Choice(["owner", "admin", "member"]),
        help="Role in --org.",
    )
    def create(email: str, password: str, admin: bool, org_slug: str | None, role: str) -> None:
        """Create a user (and optionally a membership)."""
        try:
            organization = organizations.get_by_slug(org_slug) if org_slug else None
            account = service.create_user(email, password, is_admin=admin)
            if organization is not None:
                service.add_membership(account, organization.id, role)
        except PortalError as exc:
            raise click.ClickException(exc.message) from None
        where = f" ({role} of {organization.slug})" if organization else ""
        kind = "platform admin" if admin else "user"
        click.echo(f"Created {kind} {account.email}{where}.")
