"""Waiting for durability, once per request.

Normally a command waits for its own journal seq before it answers. An
idempotent request must make its write *and* its stored reply durable
together (otherwise a crash between the two would let a retry execute the
write twice). Inside :func:`deferred_durability` the waits are collected
instead of taken, and the caller waits once, for the newest seq, after
appending the reply record.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from backchannel.runtime.journal import Journal

_deferred: ContextVar[list[int] | None] = ContextVar("deferred_durability", default=None)


async def settle(journal: Journal, seq: int) -> None:
    """Wait until ``seq`` is durable, or note it when durability is deferred."""
    if not seq:
        return
    pending = _deferred.get()
    if pending is None:
        await journal.wait_durable(seq)
    else:
        pending.append(seq)


@contextmanager
def deferred_durability() -> Iterator[list[int]]:
    """Collect the seqs the block would have waited for."""
    pending: list[int] = []
    token = _deferred.set(pending)
    try:
        yield pending
    finally:
        _deferred.reset(token)
