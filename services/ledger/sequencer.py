"""Cross-request append batching: concurrent appends in one process share
one transaction and one checkpoint, and each caller still gets its own
outcome. Between processes (several uvicorn workers, several hosts) the
database's append lock in service.append_entries keeps the log serial."""

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from services.ledger.service import Outcome, Submission
from shared.groupcommit import GroupCommit

AppendFn = Callable[[Session, Sequence[Submission]], list[Outcome]]


class Sequencer(GroupCommit[Submission, Outcome]):
    """Appends each batch of submissions in one transaction; a failed
    transaction fails every caller in it."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        append: AppendFn,
        *,
        max_batch: int = 1000,
    ) -> None:
        def write(submissions: Sequence[Submission]) -> list[Outcome]:
            with sessions() as session:
                outcomes = append(session, submissions)
                session.commit()
            return outcomes

        super().__init__(write, max_batch=max_batch, name="ledger.append")
