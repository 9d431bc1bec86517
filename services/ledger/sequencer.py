"""Cross-request append batching: concurrent appends in one process share
one transaction and one checkpoint, and each caller still gets its own
outcome. Between processes (several uvicorn workers, several hosts) the
database's append lock in service.append_entries keeps the log serial."""

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy.orm import Session

from services.ledger.service import Outcome, Submission

log = structlog.get_logger()

AppendFn = Callable[[Session, Sequence[Submission]], list[Outcome]]


@dataclass(eq=False)
class _Ticket:
    submission: Submission
    outcome: Outcome | None = None
    error: BaseException | None = None
    done: bool = False
    # Set when the ticket is answered, or when its caller is to write next.
    wake: threading.Event = field(default_factory=threading.Event)

    def result(self) -> Outcome:
        if self.error is not None:
            raise self.error
        return self.outcome


class Sequencer:
    """Gathers the appends that arrive while one batch is being written and
    writes them together. Leader/follower: a caller arriving with no writer
    at work writes; the others wait on their own ticket. After each batch the
    writer hands the pen to the oldest waiting caller, whose batch then holds
    everything queued meanwhile (up to max_batch), so no thread runs in the
    background, nothing outlives a request, and each batch wakes only its own
    callers and the next writer."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        append: AppendFn,
        *,
        max_batch: int = 1000,
    ) -> None:
        self._sessions = sessions
        self._append = append
        self._max_batch = max_batch
        self._queue: list[_Ticket] = []
        self._writing = False
        self._lock = threading.Lock()

    def submit(self, submission: Submission) -> Outcome:
        """Appends one entry, in whatever batch it lands in; blocks until
        that batch is committed (or failed) and returns this entry's outcome."""
        ticket = _Ticket(submission)
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
        try:
            with self._sessions() as session:
                outcomes = self._append(session, [t.submission for t in batch])
                session.commit()
        except Exception as exc:  # every caller in the batch learns of it
            log.error("ledger.batch_failed", size=len(batch), error=repr(exc))
            for ticket in batch:
                ticket.error = exc
            outcomes = [None] * len(batch)
        else:
            log.debug("ledger.batch_written", size=len(batch))
        for ticket, outcome in zip(batch, outcomes, strict=True):
            ticket.outcome, ticket.done = outcome, True
            ticket.wake.set()
