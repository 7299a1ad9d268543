"""Fair admission: which waiting request joins the running batch next, across tenants.

Deficit round robin (Shreedhar and Varghese) over one FIFO queue per tenant: tenants with
waiting requests take turns; on its turn a tenant is credited `quantum * share` and admits
requests while its credit covers their cost (cache tokens: prompt plus budget), then the turn
passes. A tenant sending 8x the load of another therefore gets no more than its share of the
free slots while both wait, and arrival order only matters within one tenant. When the request
whose turn it is does not fit the batch (rows or cache tokens), admission stops until the batch
has room, so a large request is not starved by smaller ones behind it. A tenant that is not
`eligible` (the loop's rule: over its share of the rows while others are about) is passed over
for this round without losing its credit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

#: Credit per turn at share 1, in cache tokens. Small against a request's cost, so a turn admits
#: about one request and tenants alternate slot by slot; a large request gathers credit over
#: several rounds (the loop to find it stays cheap: credit grows every round).
DEFAULT_QUANTUM = 64


@dataclass
class _Tenant(Generic[T]):
    share: float
    waiting: deque[tuple[T, int]]
    credit: float = 0.0


class FairQueue(Generic[T]):
    """Per-tenant FIFO queues served by deficit round robin; not thread-safe (callers lock)."""

    def __init__(self, quantum: int = DEFAULT_QUANTUM) -> None:
        self.quantum = quantum
        self._tenants: dict[Hashable, _Tenant[T]] = {}
        self._turns: deque[Hashable] = deque()  # tenants with waiting requests, whose turn first
        self._credited = False  # the tenant at the front got this turn's credit
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def push(self, tenant: Hashable, item: T, *, cost: int, share: float = 1.0) -> None:
        """Queue `item` for `tenant`; `share` (> 0) weights the tenant's turns (latest wins)."""
        if share <= 0:
            raise ValueError("a tenant's share must be > 0")
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = _Tenant(share, deque())
        entry.share = share
        if not entry.waiting:
            self._turns.append(tenant)
        entry.waiting.append((item, max(1, cost)))
        self._size += 1

    def pop(
        self,
        fits: Callable[[T], bool] = lambda _: True,
        eligible: Callable[[Hashable], bool] = lambda _: True,
    ) -> T | None:
        """The next request in fair order among `eligible` tenants if it `fits`; None when none
        waits or it does not fit."""
        passed = 0
        while self._turns and passed < len(self._turns):
            tenant = self._turns[0]
            entry = self._tenants[tenant]
            if not eligible(tenant):
                self._turns.rotate(-1)
                self._credited = False
                passed += 1
                continue
            if not self._credited:
                entry.credit += self.quantum * entry.share
                self._credited = True
            item, cost = entry.waiting[0]
            if entry.credit < cost:
                self._turns.rotate(-1)  # turn over; the credit carries to the next round
                self._credited = False
                passed = 0
                continue
            if not fits(item):
                return None
            entry.waiting.popleft()
            entry.credit -= cost
            self._size -= 1
            if not entry.waiting:  # an idle tenant keeps no credit (classic DRR)
                del self._tenants[tenant]
                self._turns.popleft()
                self._credited = False
            return item
        return None

    def remove(self, predicate: Callable[[T], bool]) -> list[T]:
        """Take out every waiting item matching `predicate` (e.g. on shutdown)."""
        taken: list[T] = []
        for tenant in list(self._turns):
            entry = self._tenants[tenant]
            kept = deque(x for x in entry.waiting if not predicate(x[0]))
            taken += [x[0] for x in entry.waiting if predicate(x[0])]
            entry.waiting = kept
            if not kept:
                if self._turns[0] == tenant:
                    self._credited = False
                self._turns.remove(tenant)
                del self._tenants[tenant]
        self._size -= len(taken)
        return taken
