"""``client.reservation(...)``: hold credits for work whose final size is not known yet.

On enter the credits are reserved (so nothing else can spend them meanwhile); on success the
actual quantity set inside (``hold.actual_quantity = 12``), or all of it, is captured; on an
exception the hold is released. A capture the portal refuses (a quantity above the reserved
one, say) also releases, so a bug in the caller never leaves credits held until expiry.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TYPE_CHECKING

from portal.client.errors import CreditsAPIError, ReservationNotOpenError
from portal.client.results import Capture, Release, Reservation

if TYPE_CHECKING:
    from portal.client.aio import AsyncCreditClient
    from portal.client.operations import Number
    from portal.client.sync import CreditClient

log = logging.getLogger("portal.client")


class _HoldState:
    """What both variants track; they differ only in blocking or awaiting the client."""

    def __init__(
        self,
        feature_key: str,
        quantity: Number,
        expires_in: int | None,
        idempotency_key: str | None,
    ) -> None:
        self.feature_key = feature_key
        self.quantity = quantity
        self.expires_in = expires_in
        # Set inside the block to capture less than reserved; None captures everything.
        self.actual_quantity: Number | None = None
        self.reservation: Reservation | None = None
        self.captured: Capture | None = None
        self.released: Release | None = None
        self._key_base = idempotency_key

    def _key(self, step: str) -> str | None:
        """Per-step keys derived from the caller's key, so a re-run of the block replays."""
        return None if self._key_base is None else f"{self._key_base}:{step}"

    @property
    def reservation_id(self) -> int:
        if self.reservation is None:
            raise RuntimeError("the reservation is made when the block is entered")
        return self.reservation.reservation_id

    def _captures_nothing(self) -> bool:
        quantity = self.actual_quantity
        return quantity is not None and not isinstance(quantity, str) and quantity == 0

    def _note_failed_release(self, exc: BaseException, error: CreditsAPIError) -> None:
        if isinstance(error, ReservationNotOpenError):
            return  # already captured, released or expired: nothing is held any more
        expires = self.reservation.expires_at.isoformat() if self.reservation else "?"
        note = (
            f"releasing reservation {self.reservation_id} failed ({error}); "
            f"its credits stay held until it expires at {expires}"
        )
        log.error(note)
        exc.add_note(note)


class ReservationHold(_HoldState):
    def __init__(
        self,
        client: CreditClient,
        feature_key: str,
        quantity: Number = 1,
        *,
        expires_in: int | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(feature_key, quantity, expires_in, idempotency_key)
        self._client = client

    def __enter__(self) -> ReservationHold:
        self.reservation = self._client.reserve(
            self.feature_key,
            self.quantity,
            expires_in=self.expires_in,
            idempotency_key=self._key("reserve"),
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self._release_after(exc)
            return
        if self._captures_nothing():
            self.released = self._client.release(
                self.reservation_id, idempotency_key=self._key("release")
            )
            return
        try:
            self.captured = self._client.capture(
                self.reservation_id, self.actual_quantity, idempotency_key=self._key("capture")
            )
        except ReservationNotOpenError:
            raise
        except CreditsAPIError as error:
            self._release_after(error)
            raise

    def _release_after(self, exc: BaseException) -> None:
        try:
            self.released = self._client.release(
                self.reservation_id, idempotency_key=self._key("release")
            )
        except CreditsAPIError as error:
            self._note_failed_release(exc, error)


class AsyncReservationHold(_HoldState):
    def __init__(
        self,
        client: AsyncCreditClient,
        feature_key: str,
        quantity: Number = 1,
        *,
        expires_in: int | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(feature_key, quantity, expires_in, idempotency_key)
        self._client = client

    async def __aenter__(self) -> AsyncReservationHold:
        self.reservation = await self._client.reserve(
            self.feature_key,
            self.quantity,
            expires_in=self.expires_in,
            idempotency_key=self._key("reserve"),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            await self._release_after(exc)
            return
        if self._captures_nothing():
            self.released = await self._client.release(
                self.reservation_id, idempotency_key=self._key("release")
            )
            return
        try:
            self.captured = await self._client.capture(
                self.reservation_id, self.actual_quantity, idempotency_key=self._key("capture")
            )
        except ReservationNotOpenError:
            raise
        except CreditsAPIError as error:
            await self._release_after(error)
            raise

    async def _release_after(self, exc: BaseException) -> None:
        try:
            self.released = await self._client.release(
                self.reservation_id, idempotency_key=self._key("release")
            )
        except CreditsAPIError as error:
            self._note_failed_release(exc, error)
