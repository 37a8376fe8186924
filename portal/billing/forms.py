"""The admin's plan and package form: text in, an ``ItemSpec`` out, every error shown at once."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    Regexp,
    ValidationError,
)

from portal.billing.catalogue import ItemSpec, Kind
from portal.billing.cents import CentsError, cents_input, parse_cents
from portal.billing.models import CatalogueItem
from portal.money import micros_to_decimal
from portal.settings.forms import CreditsField

# Stripe will not charge less than 50 cents in USD.
MINIMUM_CENTS = 50
LOOKUP_KEY = r"^[a-z][a-z0-9]*(_[a-z0-9]+)+$"
ROLLOVER_CHOICES = [
    ("none", "None: unused credits expire at the end of the period"),
    ("capped", "Capped: up to a number of credits carry over one more period"),
    ("full", "Full: all unused credits carry over"),
]
MAX_VALIDITY_DAYS = 3650


class CatalogueItemForm(FlaskForm):
    lookup_key = StringField(
        "Lookup key",
        validators=[
            DataRequired(message="Enter a lookup key."),
            Length(max=64),
            Regexp(LOOKUP_KEY, message="Use lowercase words joined by _, e.g. package_small."),
        ],
    )
    name = StringField("Name", validators=[DataRequired(message="Enter a name."), Length(max=100)])
    price = StringField(
        "Price (USD, e.g. 9.90)", validators=[InputRequired(message="Enter a price, like 9.90.")]
    )
    credits = CreditsField(
        "Credits",
        allow_zero=False,
        validators=[InputRequired(message="Enter the number of credits.")],
    )
    description = TextAreaField("Description", validators=[Optional(), Length(max=500)])
    sort_order = IntegerField(
        "Position", default=0, validators=[Optional(), NumberRange(min=0, max=10_000)]
    )
    active = BooleanField("For sale", default=True)
    # Plans only.
    rollover = SelectField("Rollover of unused credits", choices=ROLLOVER_CHOICES, default="none")
    # No ``Optional()``: it would stop the chain on an empty field before the check below.
    rollover_cap = CreditsField("Rollover cap (credits)", allow_zero=False)
    # Packages only.
    validity_days = IntegerField(
        "Valid for (days)",
        validators=[Optional()],  # empty: the credits never expire
        render_kw={"min": 1, "max": MAX_VALIDITY_DAYS},
    )

    def __init__(self, kind: Kind, *args, creating: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.creating = creating
        self.cents: int | None = None
        if not creating:
            del self.lookup_key  # fixed once created: Stripe prices carry it
        if kind == "plan":
            self.credits.label.text = "Credits per period"
            del self.validity_days
        else:
            del self.rollover
            del self.rollover_cap

    def validate_lookup_key(self, field: StringField) -> None:
        if not (field.data or "").startswith(f"{self.kind}_"):
            raise ValidationError(f"A {self.kind}'s lookup key starts with “{self.kind}_”.")

    def validate_price(self, field: StringField) -> None:
        try:
            self.cents = parse_cents(field.data or "", minimum=MINIMUM_CENTS)
        except CentsError as exc:
            raise ValidationError(str(exc)) from None

    def validate_rollover_cap(self, field: CreditsField) -> None:
        if field.errors:
            return  # not a number of credits: that error says enough
        typed = bool((field.data or "").strip())
        if self.rollover.data == "capped" and not typed:
            raise ValidationError("Enter how many unused credits may carry over.")
        if self.rollover.data != "capped" and typed:
            raise ValidationError("Only a capped rollover has a cap: leave this empty.")

    def validate_validity_days(self, field: IntegerField) -> None:
        if field.errors:
            return  # not a whole number: said already
        if not 1 <= field.data <= MAX_VALIDITY_DAYS:
            raise ValidationError(f"Enter 1 to {MAX_VALIDITY_DAYS:,} days.")

    @classmethod
    def for_item(cls, kind: Kind, item: CatalogueItem) -> CatalogueItemForm:
        """The form filled with the item's current values (never with the request's)."""
        form = cls(kind, formdata=None)
        form.name.data = item.name
        form.price.data = cents_input(item.price_cents)
        form.credits.data = str(micros_to_decimal(item.credits))
        form.description.data = item.description or ""
        form.sort_order.data = item.sort_order
        form.active.data = item.active
        if kind == "plan":
            form.rollover.data = item.rollover
            cap = item.rollover_cap
            form.rollover_cap.data = str(micros_to_decimal(cap)) if cap else ""
        else:
            form.validity_days.data = item.validity_days
        return form

    def to_spec(self) -> ItemSpec:
        assert self.cents is not None and self.credits.micros is not None
        return ItemSpec(
            name=self.name.data.strip(),
            price_cents=self.cents,
            credits=self.credits.micros,
            description=(self.description.data or "").strip() or None,
            sort_order=self.sort_order.data or 0,
            active=bool(self.active.data),
            lookup_key=self.lookup_key.data.strip() if self.creating else None,
            **self._terms(),
        )

    def _terms(self) -> dict[str, Any]:
        if self.kind == "plan":
            capped = self.rollover.data == "capped"
            return {
                "rollover": self.rollover.data,
                "rollover_cap": self.rollover_cap.micros if capped else None,
            }
        return {"validity_days": self.validity_days.data or None}
