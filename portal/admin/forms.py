"""Admin forms: feature prices and manual grants (and adjustments).

Field rules come from ``portal.credits.pricing.clean`` so the pages and the JSON API refuse
exactly the same input; the forms only turn text into values and show every error at once.
"""

from __future__ import annotations

import re
from typing import Any

from flask_wtf import FlaskForm
from wtforms import BooleanField, Field, HiddenField, IntegerField, StringField, TextAreaField
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    Optional,
    StopValidation,
)

from portal.contract.fields import Moment
from portal.credits import manual, pricing
from portal.credits.models import FeaturePrice
from portal.errors import InvalidRequest, PortalError
from portal.money import micros_to_decimal
from portal.settings.forms import CreditsField

# The form name of each model field the pricing service may report an error on.
FORM_NAMES = {"credits_per_unit": "credits"}
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
EXPIRES_AT = Moment("When the credits expire.")


def bare_message(exc: PortalError) -> str:
    """``InvalidRequest`` says "field: problem"; next to the field, only "Problem" reads well."""
    message = exc.message
    field = exc.extra.get("field")
    if field and message.startswith(f"{field}: "):
        message = message[len(field) + 2 :]
    return message[:1].upper() + message[1:]


def attach_error(form: FlaskForm, exc: PortalError) -> bool:
    """Show a domain error on the form field it names; False when the form has no such field."""
    field_name = exc.extra.get("field")
    field = getattr(form, FORM_NAMES.get(field_name, field_name or ""), None)
    if not isinstance(field, Field):
        return False
    field.errors = [*field.errors, bare_message(exc)]
    return True


class PricingRule:
    """Validate a field with the pricing service's own rule."""

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, form: FlaskForm, field: Field) -> None:
        try:
            pricing.clean(self.field, field.data)
        except InvalidRequest as exc:
            raise StopValidation(bare_message(exc)) from None


class FeatureEditForm(FlaskForm):
    name = StringField("Name", validators=[PricingRule("name")])
    category = StringField("Category", default="General", validators=[PricingRule("category")])
    credits = CreditsField(
        "Credits per unit",
        validators=[InputRequired(message="Enter the price in credits (0 is allowed).")],
    )
    unit = StringField("Unit", default="call", validators=[PricingRule("unit")])
    description = TextAreaField("Description", validators=[PricingRule("description")])
    active = BooleanField("Active", default=True)

    @classmethod
    def for_price(cls, price: FeaturePrice) -> FeatureEditForm:
        """The form filled with a feature's current values (never with the request's)."""
        return cls(
            formdata=None,
            data={
                "name": price.name,
                "category": price.category,
                "credits": str(micros_to_decimal(price.credits_per_unit)),
                "unit": price.unit,
                "description": price.description or "",
                "active": price.active,
            },
        )

    def values(self) -> dict[str, Any]:
        """The editable values, keyed as ``pricing.update_feature`` expects."""
        return {
            "name": self.name.data,
            "category": self.category.data,
            "credits_per_unit": self.credits.micros,
            "unit": self.unit.data,
            "description": self.description.data,
            "active": bool(self.active.data),
        }


class FeatureForm(FeatureEditForm):
    feature_key = StringField("Feature key", validators=[PricingRule("feature_key")])

    def draft(self) -> pricing.FeatureDraft:
        values = self.values()
        return pricing.FeatureDraft(feature_key=(self.feature_key.data or "").strip(), **values)


class GrantForm(FlaskForm):
    """A manual grant (or, with a negative amount, an adjustment): the rules are
    ``portal.credits.manual``'s, shared with the CLI and the admin JSON API."""

    amount = CreditsField(
        "Amount (credits)",
        allow_negative=True,
        allow_zero=False,
        validators=[InputRequired(message="Enter an amount, e.g. 50 or -12.5.")],
    )
    reason = StringField(
        "Reason",
        validators=[
            DataRequired(message="Say why: the reason is shown in the ledger."),
            Length(max=500),
        ],
    )
    expires_in_days = IntegerField(
        "Expires in (days)",
        validators=[Optional()],
        render_kw={"inputmode": "numeric"},
    )
    expires_at = StringField("Or expires at (UTC)", validators=[Optional()])
    priority = IntegerField("Priority", validators=[Optional()], render_kw={"inputmode": "numeric"})
    # One id per rendered form: a double submit or a resent POST cannot grant twice.
    request_id = HiddenField()

    def validate_request_id(self, field: Field) -> None:
        if field.data and not REQUEST_ID.match(field.data):
            raise StopValidation("Reload the page and try again.")

    def manual_grant(self) -> manual.ManualGrant:
        """The request as the manual-grant rules take it (``InvalidRequest`` for an
        ``expires_at`` that is no date or time)."""
        text = (self.expires_at.data or "").strip()
        return manual.ManualGrant(
            self.amount.micros or 0,
            self.reason.data or "",
            self.expires_in_days.data,
            expires_at=EXPIRES_AT.parse(text, "expires_at") if text else None,
            priority=self.priority.data,
        )

    @property
    def source_ref(self) -> str | None:
        return f"admin-grant:{self.request_id.data}" if self.request_id.data else None
