"""How the delivery sequence talks to a store: claim a delivery, then settle its claim.

No I/O of its own. ``Claims`` (sync) and ``AsyncClaims`` (coroutines) are what
``census_receiver.delivery`` calls; a dedup store reaches it through
``StoreClaims`` / ``AsyncStoreClaims`` (claim the delivery's key; complete it on
a 2xx answer, release it otherwise), and a journal implements ``Claims``
itself, recording the delivery as it goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .answers import UNAVAILABLE

if TYPE_CHECKING:
    from collections.abc import Callable

    from .answers import Answer, Outcome
    from .dedup import AsyncDedupStore, Claim, DedupStore
    from .delivery import VerifiedDelivery

__all__ = ["AsyncClaims", "AsyncStoreClaims", "Claims", "StoreClaims", "settling"]


def settling(
    store: DedupStore | AsyncDedupStore, outcome: Outcome | None
) -> Callable[[Claim], Any]:
    """How a claim in ``store`` ends: ``complete`` on a 2xx answer, else ``release``."""
    return store.complete if outcome is not None and outcome.ok else store.release


class Claims(Protocol):
    """How the delivery sequence claims a delivery and records how it ended (sync).

    A journal adds ``capture(delivery)`` (record it as pending, for a worker:
    acknowledge on capture) and ``refuse(delivery, outcome)`` (keep a verified
    body whose payload was refused).
    """

    #: ``False``: the steps are plain calls (see ``AsyncClaims``).
    is_async: bool
    #: Whether the calls wait on I/O (then ``run_async`` makes them in a worker thread).
    blocking: bool
    #: Whether every call gives up by itself well within the deadline (a database
    #: timeout), so that ``run`` need not wait for it from another thread.
    bounded: bool
    #: The answer when the store cannot be reached.
    unavailable: Answer

    def claim(self, delivery: VerifiedDelivery) -> Claim:
        """Claim ``delivery``: ``CLAIMED`` (run it), ``DONE`` or ``IN_PROGRESS``."""
        ...

    def settle(
        self,
        claim: Claim,
        delivery: VerifiedDelivery,
        outcome: Outcome | None,
        error: BaseException | None,
    ) -> None:
        """Record how the claimed delivery ended: ``outcome`` is ``None`` if it never did."""
        ...


class AsyncClaims(Protocol):
    """``Claims`` with coroutine steps, for stores with an asyncio client."""

    #: ``True``: the steps are coroutines (read once, not inspected per delivery).
    is_async: bool
    #: The answer when the store cannot be reached.
    unavailable: Answer

    async def claim(self, delivery: VerifiedDelivery) -> Claim:
        """Claim ``delivery``: ``CLAIMED`` (run it), ``DONE`` or ``IN_PROGRESS``."""
        ...

    async def settle(
        self,
        claim: Claim,
        delivery: VerifiedDelivery,
        outcome: Outcome | None,
        error: BaseException | None,
    ) -> None:
        """Record how the claimed delivery ended: ``outcome`` is ``None`` if it never did."""
        ...


class StoreClaims:
    """``Claims`` over a dedup store: claim the key; complete on 2xx, else release.

    Args:
        store: the dedup store.
    """

    __slots__ = ("blocking", "store")

    is_async = False
    bounded = False
    unavailable = UNAVAILABLE

    def __init__(self, store: DedupStore) -> None:
        self.store = store
        self.blocking: bool = getattr(store, "blocking", True)

    def claim(self, delivery: VerifiedDelivery) -> Claim:
        """Claim the delivery's key in the store."""
        return self.store.claim(delivery.key())

    def settle(
        self,
        claim: Claim,
        delivery: VerifiedDelivery,
        outcome: Outcome | None,
        error: BaseException | None,
    ) -> None:
        """Complete the claim if the delivery was answered 2xx, else release it."""
        settling(self.store, outcome)(claim)


class AsyncStoreClaims:
    """``StoreClaims`` for an ``AsyncDedupStore``."""

    __slots__ = ("store",)

    is_async = True
    unavailable = UNAVAILABLE

    def __init__(self, store: AsyncDedupStore) -> None:
        self.store = store

    async def claim(self, delivery: VerifiedDelivery) -> Claim:
        """Claim the delivery's key in the store."""
        return await self.store.claim(delivery.key())

    async def settle(
        self,
        claim: Claim,
        delivery: VerifiedDelivery,
        outcome: Outcome | None,
        error: BaseException | None,
    ) -> None:
        """Complete the claim if the delivery was answered 2xx, else release it."""
        await settling(self.store, outcome)(claim)
