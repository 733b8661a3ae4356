"""Call-order commits: versions of one collection are committed in the order ``log_artifact`` was called.

A ticket is drawn on the caller's thread at the moment of the call; uploads then run in parallel, but a
commit waits until every earlier ticket of its collection has committed or failed. So in one process
``v_i`` is the i-th call whose content was new, whatever order the uploads finish in. Across processes,
the commit protocol in ``registry.py`` orders by commit time.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Ticket:
    collection: str
    number: int


class Assigner:
    """Hands out tickets (from any thread) and lets their holders commit in ticket order (on the loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drawn: defaultdict[str, int] = defaultdict(int)
        self._served: defaultdict[str, int] = defaultdict(int)
        self._finished: defaultdict[str, set[int]] = defaultdict(set)
        self._changed: asyncio.Condition | None = None

    def draw(self, collection: str) -> Ticket:
        with self._lock:
            number = self._drawn[collection]
            self._drawn[collection] = number + 1
        return Ticket(collection, number)

    @asynccontextmanager
    async def turn(self, ticket: Ticket) -> AsyncIterator[None]:
        """Wait until every earlier ticket of the collection is done, then hold the turn."""
        changed = self._condition()
        try:
            async with changed:
                await changed.wait_for(lambda: self._served[ticket.collection] == ticket.number)
            yield
        finally:
            await self.release(ticket)

    async def release(self, ticket: Ticket) -> None:
        """Mark ``ticket`` done (idempotent); a ticket abandoned before its turn must still be released."""
        changed = self._condition()
        async with changed:
            finished = self._finished[ticket.collection]
            finished.add(ticket.number)
            while self._served[ticket.collection] in finished:
                finished.discard(self._served[ticket.collection])
                self._served[ticket.collection] += 1
            changed.notify_all()

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed
