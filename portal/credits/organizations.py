"""Organizations: the accounts that hold a balance."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.credits import service
from portal.credits.models import Organization
from portal.errors import Conflict, InvalidRequest, NotFound
from portal.extensions import db

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def slugify(name: str) -> str:
    """'Acme Labs 2' -> 'acme-labs-2': lowercase, runs of other characters become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-") or "org"


def unique_slug(name: str) -> str:
    base = slugify(name)
    taken = set(
        db.session.scalars(
            select(Organization.slug).where(
                (Organization.slug == base) | Organization.slug.like(f"{base}-%")
            )
        )
    )
    if base not in taken:
        return base
    suffix = 2
    while f"{base}-{suffix}" in taken:
        suffix += 1
    return f"{base}-{suffix}"


def get_by_slug(slug: str) -> Organization:
    organization = db.session.scalar(select(Organization).where(Organization.slug == slug))
    if organization is None:
        raise NotFound(f"No organization '{slug}'.")
    return organization


def create_organization(
    slug: str, name: str | None = None, credits: int = 0, kind: str = "grant"
) -> Organization:
    """Create an organization and, when ``credits`` > 0, its opening grant."""
    if not SLUG.match(slug) or len(slug) > 64:
        raise InvalidRequest("slug", "must be lowercase letters, digits and single dashes")
    try:
        with service.transaction():
            organization = Organization(slug=slug, name=name or slug, balance=0, reserved=0)
            db.session.add(organization)
            db.session.flush()
            if credits > 0:
                description = "Sign-up bonus" if kind == "signup_bonus" else "Opening balance"
                service.grant(organization.id, credits, kind, description=description)
    except IntegrityError:
        raise Conflict(f"Organization '{slug}' already exists.") from None
    return organization
