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
    done: bool = field(default=False)


class Sequencer:
    """Gathers the appends that arrive while one is being written and writes
    them together. Leader/follower: whichever waiting caller finds no writer
    at work becomes the writer for everything queued so far (up to
    max_batch), so no thread runs in the background and nothing outlives a
    request."""

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
        self._changed = threading.Condition()

    def submit(self, submission: Submission) -> Outcome:
        """Appends one entry, in whatever batch it lands in; blocks until
        that batch is committed (or failed) and returns this entry's outcome."""
        ticket = _Ticket(submission)
        with self._changed:
            self._queue.append(ticket)
            while not ticket.done:
                if not self._writing:
                    self._write_queued()
                else:
                    self._changed.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.outcome

    def _write_queued(self) -> None:
        """Called holding the lock: takes a batch, writes it unlocked."""
        batch = self._queue[: self._max_batch]
        del self._queue[: self._max_batch]
        self._writing = True
        self._changed.release()
        try:
            self._write(batch)
        finally:
            self._changed.acquire()
            self._writing = False
            self._changed.notify_all()

    def _write(self, batch: list[_Ticket]) -> None:
        try:
            with self._sessions() as session:
                outcomes = self._append(session, [t.submission for t in batch])
                session.commit()
        except Exception as exc:  # every caller in the batch learns of it
            log.error("ledger.batch_failed", size=len(batch), error=repr(exc))
            for ticket in batch:
                ticket.error, ticket.done = exc, True
            return
        log.debug("ledger.batch_written", size=len(batch))
        for ticket, outcome in zip(batch, outcomes, strict=True):
            ticket.outcome, ticket.done = outcome, True
