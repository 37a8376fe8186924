"""Departments: named parts of an organization, each with an optional monthly limit."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from portal.credits.errors import (
    DepartmentExists,
)
from portal.credits.models import (
    Department,
)
from portal.credits.service.ledger import (
    department_lookup,
    find_department,
)
from portal.extensions import db


def create_department(organization_id: int, name: str, monthly_limit: int | None) -> Department:
    """A new department; one whose name differs only by case from another is refused."""
    existing = db.session.scalar(department_lookup(organization_id, name))
    if existing is not None:
        raise DepartmentExists(existing.name)
    department = Department(organization_id=organization_id, name=name, monthly_limit=monthly_limit)
    db.session.add(department)
    try:
        db.session.commit()
    except IntegrityError:  # created concurrently by another request: the index decided
        db.session.rollback()
        raise DepartmentExists(find_department(organization_id, name).name) from None
    return department


def set_department_limit(organization_id: int, name: str, monthly_limit: int | None) -> Department:
    """Set or clear a department's monthly limit, creating the department if it is new.

    ``name`` in any case finds the stored department, which keeps its own spelling."""
    department = db.session.scalar(department_lookup(organization_id, name))
    if department is None:
        department = Department(organization_id=organization_id, name=name)
        db.session.add(department)
    department.monthly_limit = monthly_limit
    try:
        db.session.commit()
    except IntegrityError:  # created concurrently by another request: update that one
        db.session.rollback()
        department = find_department(organization_id, name)
        department.monthly_limit = monthly_limit
        db.session.commit()
    return department
