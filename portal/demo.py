"""``flask demo``: everything a first look needs, created once (safe to run again).

The credits part (catalogue, demo organization, 90 days of usage, an API key) comes from
``portal.credits.demo``; ``portal.billing.demo`` records the payments of its package
purchases; this adds people to log in as: an owner, a member, a platform admin.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
from flask import Flask

from portal.auth import service as people
from portal.billing import demo as billing_demo
from portal.billing.catalogue import seed_catalogue
from portal.credits import demo as credits_demo
from portal.credits import service
from portal.money import format_credits

DEMO_LOGINS = [
    # (email, password, platform admin, role in the demo organization)
    ("owner@demo.example", "demo-owner-pw", False, "owner"),
    ("member@demo.example", "demo-member-pw", False, "member"),
    ("admin@demo.example", "demo-admin-pw", True, None),
]


@dataclass(frozen=True)
class DemoLogin:
    email: str
    password: str
    description: str


def ensure_demo_people(organization_id: int) -> list[DemoLogin]:
    logins = []
    for email, password, is_admin, role in DEMO_LOGINS:
        user = people.find_user(email) or people.create_user(email, password, is_admin=is_admin)
        if role is not None:
            people.add_membership(user, organization_id, role)
        description = "platform admin" if is_admin else f"{role} of the demo organization"
        logins.append(DemoLogin(email, password, description))
    return logins


def register_demo_command(app: Flask) -> None:
    @app.cli.command("demo")
    def demo_command() -> None:
        """Idempotent demo data: prices, a demo organization with 90 days of usage, logins."""
        result = credits_demo.create_demo()
        seed_catalogue()  # idempotent: adds only plans and packages missing by lookup key
        if result.created:  # once: never undo an admin's edits of the catalogue
            billing_demo.set_demo_terms()
        billing_demo.record_purchases(result.organization.id)  # the ledger's purchases, paid
        organization = result.organization
        logins = ensure_demo_people(organization.id)
        balance = service.get_balance(organization).balance
        if result.created:
            click.echo(
                f"Demo organization '{organization.slug}': {result.entries} ledger rows, "
                f"balance {format_credits(balance)} credits."
            )
            click.echo("Demo API key (shown once, keep it):")
            click.echo(result.api_key)
        else:
            click.echo(
                f"Demo organization '{organization.slug}' is already there "
                f"(balance {format_credits(balance)}). New API key: "
                f"flask apikey create {organization.slug}"
            )
        click.echo("Log in with:")
        for login in logins:
            click.echo(f"  {login.email} / {login.password}  ({login.description})")
