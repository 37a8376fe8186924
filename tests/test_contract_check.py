"""The test client checks every /api/v1 answer against the OpenAPI document, and catches drift."""

from __future__ import annotations

import pytest


def test_the_checking_client_catches_an_undeclared_field(api, make_org, monkeypatch):
    from portal.credits.results import Balance
    from tests.contract_check import ContractViolation

    org = make_org()
    original = Balance.to_json
    monkeypatch.setattr(Balance, "to_json", lambda self: {**original(self), "extra": 1})
    with pytest.raises(ContractViolation, match="extra"):
        api.get("/balance", org)


def test_the_checking_client_catches_an_undocumented_status_or_code(api, make_org, monkeypatch):
    from portal.credits import service
    from portal.errors import PortalError
    from tests.contract_check import ContractViolation

    org = make_org()

    class Teapot(PortalError):
        status = 418
        code = "teapot"

    def refuse(*args, **kwargs):
        raise Teapot("no")

    monkeypatch.setattr(service, "get_balance", refuse)
    with pytest.raises(ContractViolation):
        api.get("/balance", org)
    Teapot.status = 401  # a documented status with a code the document does not list
    with pytest.raises(ContractViolation):
        api.get("/balance", org)
