"""Organization settings forms."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from portal.credits.schemas import DEPARTMENT_NAME
from portal.money import AmountError, parse_typed_credits
from portal.webhooks.service import EVENT_TYPES


class CreditsField(StringField):
    """Credits typed by a person (``portal.money.parse_typed``) as micro-credits in ``micros``."""

    def __init__(self, *args, allow_negative: bool = False, allow_zero: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.allow_negative = allow_negative
        self.allow_zero = allow_zero
        self.micros: int | None = None

    def pre_validate(self, form: FlaskForm) -> None:
        self.micros = None
        if not (self.data or "").strip():
            return  # the field's own validators say whether it may be left empty
        try:
            self.micros = parse_typed_credits(
                self.data, allow_negative=self.allow_negative, allow_zero=self.allow_zero
            )
        except AmountError as exc:
            raise ValidationError(str(exc)) from None


class ApiKeyForm(FlaskForm):
    name = StringField("Key name", validators=[DataRequired(), Length(max=100)])


class DepartmentForm(FlaskForm):
    name = StringField(
        "Department name",
        validators=[
            DataRequired(),
            Length(max=64),
            Regexp(DEPARTMENT_NAME, message="Use letters, digits, spaces, '.', '_' or '-'."),
        ],
    )
    monthly_limit = CreditsField("Monthly limit (credits)", validators=[Optional()])


class DepartmentLimitForm(FlaskForm):
    monthly_limit = CreditsField("Monthly limit", validators=[Optional()])


class WebhookEndpointForm(FlaskForm):
    url = StringField("Endpoint URL", validators=[DataRequired(), Length(max=2000)])
    description = StringField("Description", validators=[Optional(), Length(max=200)])
    # None ticked: every event type, including ones added later.
    events = SelectMultipleField(
        "Events",
        choices=[(name, name) for name in EVENT_TYPES],
        validators=[Optional()],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
