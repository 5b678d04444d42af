"""The journal task: every accepted change, in order, made durable in groups.

Theory of operation
===================

``append_nowait(body)`` assigns the next global seq, packs and frames the
record at once (so an unpackable body fails in the caller and consumes no
seq) and queues it. One task, ``FileJournal.run``, does all the file work:

1. wait (blocking, once) until something is queued or requested;
2. take *everything* queued, plus any pending flush/roll request, with no
   await in between (so nothing is taken twice or lost);
3. make one ``trio.to_thread.run_sync`` call that writes the batch with one
   ``os.write`` and, per policy, fsyncs it (the log closes each batch with
   a marker in that same write, so recovery can tell a batch cut short by
   a crash from damage; ``storage.segments``);
4. advance ``last_durable_seq`` and release every waiter of that batch.

It never lingers to grow a batch: while one batch is in the thread, new
appends pile up and become the next batch, so batch size follows load.

Fsync policies (``wait_durable`` returns when the record is durable *per
policy*):

- ``always``: after the batch is written and fsynced (the default, and the
  only one where an answered write survives a power cut).
- ``interval``: after the batch is written to the OS; fsync at most once per
  ``interval`` seconds, including once after the last write when idle.
- ``never``: after the write; fsync only on ``flush``, ``roll`` and stop.

Failure: an ``OSError`` from write or fsync marks the journal failed for
good; it is logged, every pending waiter and every later ``append_nowait``,
``wait_durable``, ``flush`` and ``roll`` raises ``JournalFailed``, and the
task then idles until cancelled. The fsync is never retried: after a failed
fsync the kernel may have dropped the dirty pages. Records in the failed
batch may or may not be on disk; their writers were told "failed".

Cancellation: the thread call is shielded and keeps trio's default
``abandon_on_cancel=False``, so cancelling ``run`` waits for the in-flight
write/fsync instead of abandoning it. Then ``run`` writes, fsyncs and closes
whatever is still queued (shielded) and stops; later appends raise
``JournalFailed``. A cancelled ``wait_durable`` leaves nothing behind and
does not cancel the write.

``MemoryJournal`` is the file-less twin for tests on a ``MockClock``, where
worker-thread fsyncs would confuse autojump.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import msgpack
import trio

from backchannel.storage.log import DEFAULT_SEGMENT_BYTES, LogWriter, encode_record

__all__ = [
    "FileJournal",
    "FsyncPolicy",
    "Journal",
    "JournalFailed",
    "JournalStatistics",
    "MemoryJournal",
]

logger = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]
_POLICIES: tuple[FsyncPolicy, ...] = ("always", "interval", "never")


class JournalFailed(Exception):
    """The durable write failed; writes get 503 and the server refuses writes until restart."""


@dataclass(frozen=True)
class JournalStatistics:
    """A snapshot of the journal's counters.

    Attributes:
        queued: records appended but not yet durable.
        last_assigned_seq: the newest seq handed out.
        last_durable_seq: the newest seq durable per the fsync policy.
        batches: write batches completed.
        failed: True once the journal refuses writes (failure or stopped).
        last_synced_seq: the newest seq known fsynced.
        waiting: tasks currently inside ``wait_durable``.
    """

    queued: int
    last_assigned_seq: int
    last_durable_seq: int
    batches: int
    failed: bool
    last_synced_seq: int = 0
    waiting: int = 0


class Journal(Protocol):
    """What the runtime needs from a journal (semantics: see ``FileJournal``)."""

    def append_nowait(self, body: Any) -> int:
        """Assign the next seq, enqueue, return it. Never blocks. Raises JournalFailed."""
        ...

    async def wait_durable(self, seq: int) -> None:
        """Return once ``seq`` is durable per policy; JournalFailed if it never can be."""
        ...

    @property
    def last_seq(self) -> int:
        """The last assigned seq."""
        ...

    def statistics(self) -> JournalStatistics:
        """Counters for health and admin endpoints."""
        ...

    async def flush(self) -> None:
        """Make everything appended so far durable. Raises JournalFailed."""
        ...

    async def roll(self) -> None:
        """Start a new segment after what is queued (snapshots prune older ones)."""
        ...


class MemoryJournal:
    """A journal without files: records kept in ``records``, durable at once.

    Bodies are still checked to be msgpack-packable, so tests catch events
    the file journal would refuse.
    """

    def __init__(self, *, next_seq: int = 1) -> None:
        if next_seq < 1:
            raise ValueError(f"next_seq must be positive, got {next_seq}")
        self.records: list[tuple[int, Any]] = []
        self._last = next_seq - 1
        self._failure: str | None = None

    def append_nowait(self, body: Any) -> int:
        """See ``Journal.append_nowait``; also raises TypeError if unpackable."""
        if self._failure is not None:
            raise JournalFailed(self._failure)
        msgpack.packb(body, use_bin_type=True)
        self._last += 1
        self.records.append((self._last, body))
        return self._last

    async def wait_durable(self, seq: int) -> None:
        """Checkpoint, then return: every assigned seq is already durable.

        Raises:
            ValueError: if ``seq`` was never assigned.
        """
        if seq > self._last:
            raise ValueError(f"seq {seq} was never assigned (last is {self._last})")
        await trio.lowlevel.checkpoint()

    @property
    def last_seq(self) -> int:
        return self._last

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            queued=0,
            last_assigned_seq=self._last,
            last_durable_seq=self._last,
            batches=len(self.records),
            failed=self._failure is not None,
            last_synced_seq=self._last,
        )

    async def flush(self) -> None:
        """Nothing to do; checkpoints. Raises JournalFailed once failed."""
        await trio.lowlevel.checkpoint()
        if self._failure is not None:
            raise JournalFailed(self._failure)

    async def roll(self) -> None:
        """Nothing to do; checkpoints. Raises JournalFailed once failed."""
        await self.flush()

    def fail(self, reason: str = "simulated journal failure") -> None:
        """Make every later append fail, as a failed disk would (for tests)."""
        self._failure = reason


class FileJournal:
    """A journal over a ``LogWriter`` in ``directory``, with group commit.

    Args:
        directory: the log directory (recovery must have run on it).
        next_seq: the first seq to assign, ``recovered.last_seq + 1``.
        fsync: "always", "interval" or "never" (module docstring).
        interval: seconds between fsyncs under "interval".
        segment_bytes: size at which a new log segment is started.

    Usage::

        journal = FileJournal(data_dir, next_seq=recovered.last_seq + 1)
        await nursery.start(journal.run)
        ...
        await journal.flush()         # at shutdown, to see errors
        nursery.cancel_scope.cancel()  # run() drains, fsyncs, closes
    """

    def __init__(
        self,
        directory: Path,
        *,
        next_seq: int,
        fsync: FsyncPolicy = "always",
        interval: float = 1.0,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if next_seq < 1:
            raise ValueError(f"next_seq must be positive, got {next_seq}")
        if fsync not in _POLICIES:
            raise ValueError(f"fsync must be one of {_POLICIES}, got {fsync!r}")
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self._directory = directory
        self._policy: FsyncPolicy = fsync
        self._interval = interval
        self._segment_bytes = segment_bytes
        self._next_seq = next_seq
        self._last_assigned = self._written = self._synced = next_seq - 1
        self._queue: list[tuple[int, bytes]] = []
        self._queue_event = trio.Event()  # set when the queued records are durable
        self._inflight: tuple[int, trio.Event] | None = None
        self._wakeup = trio.Event()
        self._sync_request: trio.Event | None = None
        self._roll_request: trio.Event | None = None
        self._failure: BaseException | None = None
        self._state: Literal["new", "running", "stopped"] = "new"
        self._writer: LogWriter | None = None
        self._last_sync_time = -math.inf
        self._batches = 0
        self._rolls = 0
        self._waiting = 0
        self.on_batch: Callable[[int, float], None] | None = None  # (records, seconds)

    # -- the Journal protocol ---------------------------------------------------

    def append_nowait(self, body: Any) -> int:
        """Assign the next seq, frame ``body`` and queue it. Never blocks.

        Raises:
            JournalFailed: if the journal has failed or stopped.
            TypeError: if ``body`` cannot be packed (no seq is consumed).
        """
        self._raise_if_unusable()
        seq = self._last_assigned + 1
        frame = encode_record(seq, body)
        self._last_assigned = seq
        self._queue.append((seq, frame))
        self._wakeup.set()
        return seq

    async def wait_durable(self, seq: int) -> None:
        """Return once ``seq`` is durable per the fsync policy.

        Cancellation:
            Safe at any point: the waiter only parks on a batch's
            ``trio.Event``; cancelling it leaves nothing behind and the
            write goes on.

        Raises:
            JournalFailed: if the journal failed or stopped first.
            ValueError: if ``seq`` was never assigned.
        """
        if seq > self._last_assigned:
            raise ValueError(f"seq {seq} was never assigned (last is {self._last_assigned})")
        self._waiting += 1
        try:
            if self._durable >= seq:
                await trio.lowlevel.checkpoint()
                return
            while self._durable < seq:
                self._raise_if_unusable()
                inflight = self._inflight
                if inflight is not None and seq <= inflight[0]:
                    await inflight[1].wait()
                else:
                    await self._queue_event.wait()
        finally:
            self._waiting -= 1

    @property
    def last_seq(self) -> int:
        return self._last_assigned

    def statistics(self) -> JournalStatistics:
        return JournalStatistics(
            queued=self._last_assigned - self._durable,
            last_assigned_seq=self._last_assigned,
            last_durable_seq=self._durable,
            batches=self._batches,
            failed=self._failure is not None or self._state == "stopped",
            last_synced_seq=self._synced,
            waiting=self._waiting,
        )

    # -- control ----------------------------------------------------------------

    async def flush(self) -> None:
        """Make everything appended so far durable, fsync included, whatever the policy.

        Cancellation: cancelling the caller does not cancel the fsync.

        Raises:
            JournalFailed: if the journal failed (or stopped with records unsynced).
        """
        target = self._last_assigned
        if self._synced >= target:
            await trio.lowlevel.checkpoint()
            return
        self._raise_if_unusable()
        if self._sync_request is None:
            self._sync_request = trio.Event()
        request = self._sync_request
        self._wakeup.set()
        await request.wait()
        if self._synced < target:
            self._raise_if_unusable()
            raise JournalFailed("journal stopped before the flush")

    async def roll(self) -> None:
        """Write what is queued, fsync and close the segment; the next batch starts a new one.

        Used by the snapshotter so that segments wholly covered by a
        snapshot can be deleted. Cancellation does not cancel the roll.

        Raises:
            JournalFailed: if the journal failed or stopped.
        """
        self._raise_if_unusable()
        rolls_before = self._rolls
        if self._roll_request is None:
            self._roll_request = trio.Event()
        request = self._roll_request
        self._wakeup.set()
        await request.wait()
        if self._rolls == rolls_before:
            self._raise_if_unusable()
            raise JournalFailed("journal stopped before the roll")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The journal task. Never returns unless cancelled; start it with ``nursery.start``.

        "Started" means the writer is open and ready.

        Cancellation:
            The in-flight thread call finishes (shielded, and trio's default
            ``abandon_on_cancel=False``); then everything still queued is
            written, fsynced and the segment closed, under a shield. A
            failure there is logged and fails the waiters; it does not
            replace the cancellation.

        Raises:
            RuntimeError: if called twice.
            OSError, ValueError: if the writer cannot be opened (before started).
        """
        if self._state != "new":
            raise RuntimeError("FileJournal.run() can only be called once")
        self._state = "running"
        try:
            self._writer = await trio.to_thread.run_sync(
                LogWriter, self._directory, self._next_seq, self._segment_bytes
            )
        except BaseException as exc:
            self._stop(exc)
            raise
        self._last_sync_time = trio.current_time()
        logger.info(
            "journal started in %s at seq %d (fsync=%s)",
            self._directory,
            self._next_seq,
            self._policy,
        )
        task_status.started()
        try:
            while True:
                if self._failure is not None:
                    await trio.sleep_forever()
                await self._wait_for_work()
                await self._commit(final=False)
        except trio.Cancelled:
            if self._failure is None:
                await self._commit(final=True)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await self._close_writer()
            self._stop(None)

    # -- internals --------------------------------------------------------------

    @property
    def _durable(self) -> int:
        return self._synced if self._policy == "always" else self._written

    def _raise_if_unusable(self) -> None:
        if self._failure is not None:
            raise JournalFailed(f"journal failed: {self._failure!r}") from self._failure
        if self._state == "stopped":
            raise JournalFailed("journal has stopped")

    def _has_work(self) -> bool:
        return bool(self._queue) or self._sync_request is not None or self._roll_request is not None

    def _sync_due(self) -> bool:
        return (
            self._policy == "interval"
            and self._written > self._synced
            and trio.current_time() >= self._last_sync_time + self._interval
        )

    async def _wait_for_work(self) -> None:
        """Block until something is queued or requested, or an interval fsync is due."""
        while not self._has_work():
            if self._policy == "interval" and self._written > self._synced:
                deadline = self._last_sync_time + self._interval
            else:
                deadline = math.inf
            with trio.move_on_at(deadline) as timer:
                await self._wakeup.wait()
            if timer.cancelled_caught:
                return
            if not self._has_work():
                self._wakeup = trio.Event()

    async def _commit(self, *, final: bool) -> None:
        """Take everything queued and requested; one thread call; release waiters."""
        writer = self._writer
        assert writer is not None
        frames, self._queue = self._queue, []
        batch_done, self._queue_event = self._queue_event, trio.Event()
        sync_request, self._sync_request = self._sync_request, None
        roll_request, self._roll_request = self._roll_request, None
        self._wakeup = trio.Event()
        roll = roll_request is not None
        sync = (
            final
            or sync_request is not None
            or (self._policy == "always" and bool(frames))
            or self._sync_due()
        )
        if frames:
            self._inflight = (frames[-1][0], batch_done)
        started = trio.current_time()
        released = [batch_done, sync_request, roll_request]
        try:
            with trio.CancelScope(shield=True):
                synced = await trio.to_thread.run_sync(_write_batch, writer, frames, sync, roll)
        except OSError as exc:
            self._fail(exc)
        else:
            if frames:
                self._written = frames[-1][0]
                self._batches += 1
                if self.on_batch is not None:
                    self.on_batch(len(frames), trio.current_time() - started)
            if synced:
                self._synced = self._written
                self._last_sync_time = started
            if roll:
                self._rolls += 1
        finally:
            self._inflight = None
            _set_all(released)  # waiters re-check durable/failed state themselves

    async def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            await trio.to_thread.run_sync(writer.close)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self._failure is None:
            self._failure = exc
            logger.error(
                "journal write to %s failed; refusing writes until restart",
                self._directory,
                exc_info=exc,
            )
        self._queue.clear()
        _set_all([self._queue_event, self._sync_request, self._roll_request])

    def _stop(self, exc: BaseException | None) -> None:
        """Mark stopped and wake everyone; waiters not yet durable get JournalFailed."""
        self._state = "stopped"
        if exc is not None and self._failure is None and isinstance(exc, Exception):
            self._failure = exc
        self._queue.clear()
        _set_all([self._queue_event, self._sync_request, self._roll_request])


def _write_batch(
    writer: LogWriter, frames: list[tuple[int, bytes]], sync: bool, roll: bool
) -> bool:
    """Worker-thread body: one write, then fsync or roll. Returns True if synced."""
    writer.write_frames(frames)
    if roll:
        writer.roll()
        return True
    if sync:
        writer.sync()
        return True
    return False


def _set_all(events: list[trio.Event | None]) -> None:
    for event in events:
        if event is not None:
            event.set()
