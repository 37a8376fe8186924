"""The usage filter form (a GET form: no CSRF token, nothing changes)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import DateField, SelectField
from wtforms.validators import Optional, ValidationError

from portal.contract.fields import end_of_day, start_of_day
from portal.credits.queries import LedgerFilter


class UsageFilterForm(FlaskForm):
    class Meta:
        csrf = False

    feature = SelectField("Feature", validators=[Optional()], validate_choice=False)
    category = SelectField("Category", validators=[Optional()], validate_choice=False)
    department = SelectField("Department", validators=[Optional()], validate_choice=False)
    start = DateField("From", validators=[Optional()])
    end = DateField("To", validators=[Optional()])

    def validate_end(self, field: DateField) -> None:
        if field.data and self.start.data and field.data < self.start.data:
            raise ValidationError("must be on or after the start date")

    def to_filter(self, organization_id: int) -> LedgerFilter:
        start = self.start.data
        end = self.end.data
        return LedgerFilter(
            organization_id=organization_id,
            start=start_of_day(start) if start else None,
            end=end_of_day(end) if end else None,
            feature_key=self.feature.data or None,
            category=self.category.data or None,
            department=self.department.data or None,
        )

    def query_args(self) -> dict[str, str]:
        """The active filters, for links (pagination, CSV export) that keep them."""
        values = {
            "feature": self.feature.data,
            "category": self.category.data,
            "department": self.department.data,
            "start": self.start.data.isoformat() if self.start.data else None,
            "end": self.end.data.isoformat() if self.end.data else None,
        }
        return {key: value for key, value in values.items() if value}
