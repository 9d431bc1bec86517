"""Group commit across requests: the items that arrive in one process while a
batch is being written are written together in the next batch, and each
caller still gets its own outcome. Between processes the database's own
locks keep writers apart."""

import asyncio
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import structlog
from anyio import to_thread

log = structlog.get_logger()

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")
# Writes a batch and answers one outcome per item, in order; an exception in
# place of an outcome is raised to that item's caller alone.
WriteFn = Callable[[Sequence[Item]], Sequence["Outcome | BaseException"]]


@dataclass(eq=False)
class _Ticket(Generic[Item, Outcome]):
    item: Item
    outcome: Outcome | None = None
    error: BaseException | None = None
    done: bool = False
    # Set when the ticket is answered, or when its caller is to write next.
    wake: threading.Event = field(default_factory=threading.Event)

    def answer(self, outcome: "Outcome | BaseException") -> None:
        if isinstance(outcome, BaseException):
            self.error = outcome
        else:
            self.outcome = outcome
        self.done = True
        self.wake.set()

    def result(self) -> Outcome:
        if self.error is not None:
            raise self.error
        return self.outcome


class _Batches(Generic[Item, Outcome]):
    """A write function, the most items it takes at once, and a name to log."""

    def __init__(
        self, write: WriteFn, *, max_batch: int = 1000, name: str = "batch"
    ) -> None:
        self._write_fn = write
        self._max_batch = max_batch
        self._name = name

    def _outcomes(self, items: list[Item]) -> Sequence["Outcome | BaseException"]:
        """The write's outcomes, or its exception for every item."""
        try:
            outcomes = self._write_fn(items)
        except Exception as exc:
            log.error(
                "groupcommit.batch_failed",
                name=self._name,
                size=len(items),
                error=repr(exc),
            )
            return [exc] * len(items)
        log.debug("groupcommit.batch_written", name=self._name, size=len(items))
        return outcomes


class GroupCommit(_Batches[Item, Outcome]):
    """Leader/follower batching. A caller arriving with no writer at work
    writes; the others wait on their own ticket. After each batch the writer
    hands the pen to the oldest waiting caller, whose batch then holds
    everything queued meanwhile (up to max_batch). No thread runs in the
    background, nothing outlives a request, and each batch wakes only its own
    callers and the next writer. If `write` raises, every caller in that
    batch gets the exception and the next batch runs as usual."""

    def __init__(
        self, write: WriteFn, *, max_batch: int = 1000, name: str = "batch"
    ) -> None:
        super().__init__(write, max_batch=max_batch, name=name)
        self._queue: list[_Ticket] = []
        self._writing = False
        self._lock = threading.Lock()

    def submit(self, item: Item) -> Outcome:
        """Writes one item in whatever batch it lands in; blocks until that
        batch is written (or failed) and returns this item's outcome."""
        ticket = _Ticket(item)
        with self._lock:
            self._queue.append(ticket)
            leads = not self._writing
            self._writing = True
        if not leads:
            ticket.wake.wait()
        if not ticket.done:
            self._write_next()
        return ticket.result()

    def _write_next(self) -> None:
        """Writes the batch at the head of the queue (which starts with this
        caller's ticket), then hands over to the next waiting caller."""
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        try:
            self._write(batch)
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                self._writing = successor is not None
            if successor is not None:
                successor.wake.set()

    def _write(self, batch: list[_Ticket]) -> None:
        outcomes = self._outcomes([ticket.item for ticket in batch])
        for ticket, outcome in zip(batch, outcomes, strict=True):
            ticket.answer(outcome)


class AsyncGroupCommit(_Batches[Item, Outcome]):
    """Group commit for async endpoints: callers wait on the event loop, not
    in a thread each, and one task per process writes batch after batch in a
    worker thread while items keep arriving. With thousands of clients each
    sending one small item, a waiting request then costs a future, not one of
    the few threads that may hold a database connection."""

    def __init__(
        self, write: WriteFn, *, max_batch: int = 1000, name: str = "batch"
    ) -> None:
        super().__init__(write, max_batch=max_batch, name=name)
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def submit(self, item: Item) -> Outcome:
        """Writes one item in whatever batch it lands in and returns its
        outcome, or raises its own exception."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            items = [item for item, _ in batch]
            outcomes = await to_thread.run_sync(self._outcomes, items)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                _settle(future, outcome)


def _settle(future: asyncio.Future, outcome) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
