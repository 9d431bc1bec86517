"""Group commit: items that arrive while a batch is written go in the next
batch, and each caller gets its own outcome or its own exception."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.groupcommit import AsyncGroupCommit, GroupCommit


class Refused(Exception):
    pass


def slow_double(sizes: list[int]):
    """A write that takes a while and refuses negative items alone."""

    def write(items):
        sizes.append(len(items))
        time.sleep(0.01)
        return [Refused(item) if item < 0 else item * 2 for item in items]

    return write


def test_threads_share_batches_and_get_their_own_outcomes():
    sizes: list[int] = []
    writer = GroupCommit(slow_double(sizes), max_batch=8)
    items = [n if n % 7 else -n - 1 for n in range(64)]

    def submit(item):
        try:
            return writer.submit(item)
        except Refused as refused:
            return ("refused", refused.args[0])

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(submit, items))

    assert outcomes == [("refused", item) if item < 0 else item * 2 for item in items]
    assert sum(sizes) == 64
    assert max(sizes) <= 8
    assert len(sizes) < 64, "no batch held more than one item"


def test_a_failed_write_fails_its_batch_and_the_next_batch_runs():
    calls = []

    def write(items):
        calls.append(list(items))
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return list(items)

    writer = GroupCommit(write)
    with pytest.raises(RuntimeError):
        writer.submit(1)
    assert writer.submit(2) == 2


def test_async_callers_share_batches_without_a_thread_each():
    sizes: list[int] = []
    writer = AsyncGroupCommit(slow_double(sizes), max_batch=50)
    items = [n if n % 5 else -n - 1 for n in range(300)]

    async def submit(item):
        try:
            return await writer.submit(item)
        except Refused as refused:
            return ("refused", refused.args[0])

    async def main():
        before = threading.active_count()
        outcomes = await asyncio.gather(*(submit(item) for item in items))
        return outcomes, threading.active_count() - before

    outcomes, extra_threads = asyncio.run(main())

    assert outcomes == [("refused", item) if item < 0 else item * 2 for item in items]
    assert sum(sizes) == 300
    assert max(sizes) <= 50
    assert len(sizes) <= 8, "the callers were not gathered into batches"
    assert extra_threads <= 1


def test_async_write_failure_reaches_every_caller_of_its_batch_only():
    calls = []

    def write(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return list(items)

    async def main():
        writer = AsyncGroupCommit(write)
        first = await asyncio.gather(writer.submit(1), return_exceptions=True)
        second = await writer.submit(2)
        return first, second

    first, second = asyncio.run(main())
    assert isinstance(first[0], RuntimeError)
    assert second == 2
