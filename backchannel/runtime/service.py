"""``open_runtime``: recovery, journal, hub and snapshotter, nested in order.

Lifetimes are nested ``async with`` blocks opened in dependency order
(style.md #5): the journal starts first and stops last; the hub (and its
channel actors) starts after it; then the webhook sender and the
snapshotter. On exit the sender stops first (an attempt it cuts is
retried after the next start), the hub
stops taking commands and wakes its waiters, the actors drain their
inboxes, the journal flushes, and a final snapshot makes the next start
replay nothing.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

from backchannel.config import Settings
from backchannel.core.world import World
from backchannel.runtime.clock import WallClock
from backchannel.runtime.hub import Hub
from backchannel.runtime.journal import FileJournal, Journal, JournalFailed, MemoryJournal
from backchannel.runtime.metrics import Metrics
from backchannel.runtime.snapshotter import run_snapshotter, take_snapshot
from backchannel.runtime.webhooks import WebhookSender
from backchannel.storage.recovery import recover
from backchannel.storage.state import load_snapshot_payload, replay

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """The server cannot start with this data directory; the message says why."""


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    snapshot: str | None
    channels: int
    messages: int
    records_replayed: int
    seconds: float
    warnings: tuple[str, ...]

    def describe(self) -> str:
        source = self.snapshot or "no snapshot"
        return (
            f"recovered from {source}: {self.channels} channels, {self.messages} live messages, "
            f"{self.records_replayed} log records replayed in {self.seconds:.2f}s"
        )


def prepare_data_dir(directory: Path) -> None:
    """Create the data directory (0700) if missing; fail fast if it is not writable."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner-only, like its files
    except OSError as exc:
        raise StartupError(f"cannot create data directory {directory}: {exc.strerror}") from None
    if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
        raise StartupError(f"data directory {directory} is not a writable directory")


def load_state(directory: Path, allow_truncate: bool) -> tuple[World, int, int, RecoveryReport]:
    """Newest valid snapshot plus the log after it. Blocking; run in a thread.

    Returns ``(world, next journal seq, newest timestamp, report)``.
    """
    started = time.perf_counter()
    recovered = recover(directory, allow_truncate=allow_truncate)
    enabled = gc.isenabled()
    gc.disable()  # loading builds millions of objects; the GC would revisit them all
    try:
        newest = 0
        if recovered.snapshot_payload is not None:
            world, newest = load_snapshot_payload(recovered.snapshot_payload)
        else:
            world = World()
        replayed, newest_event = replay(world, recovered.records)
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    last = max(
        recovered.last_seq,
        recovered.snapshot_seq or 0,
        world.applied_seq,
        max((c.applied_seq for c in world.channels.values()), default=0),
    )
    report = RecoveryReport(
        str(recovered.snapshot_path.name) if recovered.snapshot_path else None,
        len(world.channels),
        sum(c.live_count for c in world.channels.values()),
        replayed,
        time.perf_counter() - started,
        tuple(recovered.warnings),
    )
    return world, last + 1, max(newest, newest_event), report


@asynccontextmanager
async def open_runtime(settings: Settings, *, in_memory: bool = False) -> AsyncIterator[Hub]:
    """Run the whole runtime for the duration of the block and yield its Hub.

    Args:
        settings: server settings; ``data_dir`` holds snapshots and log.
        in_memory: no files at all (a :class:`MemoryJournal`); for tests on
            a ``MockClock``, where worker-thread fsyncs would confuse autojump.
    """
    journal: Journal
    directory = settings.data_dir
    file_journal: FileJournal | None = None
    if in_memory:
        world = World()
        journal = MemoryJournal()
        clock = WallClock()
    else:
        prepare_data_dir(directory)
        world, next_seq, newest, report = await trio.to_thread.run_sync(
            load_state, directory, settings.allow_truncate
        )
        log.info("%s", report.describe())  # recovery already logged each warning
        journal = file_journal = FileJournal(
            directory,
            next_seq=next_seq,
            fsync=settings.fsync,
            interval=settings.fsync_interval_seconds,
        )
        clock = WallClock(max(time.time_ns() // 1000, newest + 1))
    hub = Hub(settings, world, journal, clock)
    if settings.metrics_enabled:
        hub.metrics = Metrics(hub)
        if file_journal is not None:
            file_journal.on_batch = hub.metrics.observe_batch
    async with trio.open_nursery() as nursery:
        if file_journal is not None:
            await nursery.start(file_journal.run)
        hub_done = trio.Event()

        async def run_hub(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await hub.run(task_status=task_status)
            finally:
                hub_done.set()

        await nursery.start(run_hub)
        sender = WebhookSender(hub)
        hub.on_webhook = sender.notify
        hub.sender = sender
        await nursery.start(sender.run)
        if file_journal is not None and settings.snapshot_interval_seconds > 0:
            nursery.start_soon(run_snapshotter, hub, directory, settings.snapshot_interval_seconds)
        try:
            yield hub
        finally:
            with trio.CancelScope(shield=True):
                await _shutdown(hub, hub_done, file_journal, settings)
            nursery.cancel_scope.cancel()


async def _shutdown(
    hub: Hub, hub_done: trio.Event, journal: FileJournal | None, settings: Settings
) -> None:
    """Drain actors, flush the journal, write the final snapshot.

    Runs shielded. A journal that already stopped (its task was cancelled,
    which flushes what was queued) or failed is reported, not raised: the
    final snapshot is still worth writing.
    """
    if hub.sender is not None:
        hub.sender.cancel_scope.cancel()  # an attempt cut here is retried after restart
    hub.close()
    with trio.move_on_after(settings.graceful_timeout_seconds + 5):
        await hub_done.wait()
    if journal is None:
        return
    try:
        await journal.flush()
        await journal.roll()
    except JournalFailed as exc:
        log.warning("journal unavailable at shutdown (%s); writing the snapshot anyway", exc)
    try:
        await take_snapshot(hub, settings.data_dir)
    except OSError:
        log.exception("final snapshot failed; the log still holds every answered write")
