"""Credits domain errors; each carries the API code and the extra fields the contract names."""

from __future__ import annotations

from portal.errors import Conflict, NotFound, PaymentRequired, Unprocessable
from portal.money import micros_to_decimal


class FeatureNotFound(NotFound):
    code = "feature_not_found"

    def __init__(self, feature_key: str) -> None:
        super().__init__(f"No active feature priced as '{feature_key}'.", feature_key=feature_key)


class DepartmentNotFound(NotFound):
    code = "department_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"No department named '{name}'; create it with PUT /api/v1/departments/{name}/limit.",
            department=name,
        )


class DepartmentExists(Conflict):
    code = "department_exists"

    def __init__(self, name: str) -> None:
        super().__init__(f"A department named '{name}' already exists.", department=name)


class InsufficientCredits(PaymentRequired):
    code = "insufficient_credits"

    def __init__(self, required: int, available: int) -> None:
        super().__init__(
            f"This needs {micros_to_decimal(required)} credits; "
            f"{micros_to_decimal(available)} are available.",
            required=micros_to_decimal(required),
            available=micros_to_decimal(available),
        )


class DepartmentLimitExceeded(PaymentRequired):
    code = "department_limit_exceeded"

    def __init__(self, department: str, limit: int, used: int, required: int) -> None:
        super().__init__(
            f"Department '{department}' has used {micros_to_decimal(used)} of its monthly limit "
            f"of {micros_to_decimal(limit)}; this needs {micros_to_decimal(required)} more.",
            limit=micros_to_decimal(limit),
            used=micros_to_decimal(used),
            required=micros_to_decimal(required),
        )


class DeductionNotFound(NotFound):
    code = "deduction_not_found"

    def __init__(self, deduction_id: object) -> None:
        super().__init__(f"No deduction {deduction_id} in this organization.")


class AlreadyRefunded(Conflict):
    code = "already_refunded"

    def __init__(self, deduction_id: int) -> None:
        super().__init__(f"Deduction {deduction_id} has already been refunded in full.")


class RefundExceedsDeduction(Conflict):
    """409: the body is valid; what is left of the deduction (its state) is what refuses it."""

    code = "refund_exceeds_deduction"

    def __init__(self, requested: int, refundable: int) -> None:
        super().__init__(
            f"Only {micros_to_decimal(refundable)} credits of this deduction are still "
            f"refundable; {micros_to_decimal(requested)} were asked for.",
            refundable=micros_to_decimal(refundable),
        )


class QuantityExceedsReservation(Conflict):
    """409: a valid quantity, more than this hold reserved."""

    code = "quantity_exceeds_reservation"

    def __init__(self, reserved: int) -> None:
        super().__init__(
            f"quantity: must not exceed the reserved quantity {micros_to_decimal(reserved)}",
            field="quantity",
            reserved=micros_to_decimal(reserved),
        )


class ReservationNotFound(NotFound):
    code = "reservation_not_found"

    def __init__(self, reservation_id: object) -> None:
        super().__init__(f"No reservation {reservation_id} in this organization.")


class ReservationNotOpen(Conflict):
    code = "reservation_not_open"

    def __init__(self, reservation_id: int, status: str) -> None:
        super().__init__(f"Reservation {reservation_id} is {status}.", status=status)


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("This Idempotency-Key was already used with a different request.")


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed.")
