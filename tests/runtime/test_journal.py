"""The journal task with real files (file I/O in worker threads).

MockClock autojump would jump while a worker thread fsyncs (style.md #10),
so these tests use real time and real files under ``tmp_path``; each test
is guarded by ``trio.fail_after`` as well as pytest-timeout. The
``interval`` tests run on a MockClock that only the test moves (no
autojump), so they assert exact instants without sleeping.
"""

from __future__ import annotations

import errno
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ParamSpec

import pytest
import trio
import trio.testing

from backchannel.runtime.journal import (
    FileJournal,
    FsyncPolicy,
    Journal,
    JournalFailed,
    MemoryJournal,
)
from backchannel.storage.log import LogWriter, list_segments, read_segment
from backchannel.storage.recovery import recover

P = ParamSpec("P")
GUARD_SECONDS = 10


def guarded(fn: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """Fail the test on trio's clock if it hangs."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        with trio.fail_after(GUARD_SECONDS):
            await fn(*args, **kwargs)

    return wrapper


@asynccontextmanager
async def running(journal: FileJournal) -> AsyncIterator[FileJournal]:
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        yield journal
        nursery.cancel_scope.cancel()


class SyncSpy:
    """Wraps ``LogWriter.sync``: records call times, can hold calls at a gate."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[float] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        real_sync = LogWriter.sync

        def spy(writer: LogWriter) -> None:
            self.calls.append(time.monotonic())
            self.entered.set()
            if not self.release.wait(GUARD_SECONDS):
                raise RuntimeError("test never released the sync gate")
            real_sync(writer)

        monkeypatch.setattr(LogWriter, "sync", spy)

    def hold(self) -> None:
        self.entered.clear()
        self.release.clear()

    async def wait_entered(self) -> None:
        assert await trio.to_thread.run_sync(self.entered.wait, GUARD_SECONDS)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> SyncSpy:
    return SyncSpy(monkeypatch)


def _on_disk(directory: Path) -> list[tuple[int, Any]]:
    return [record for path in list_segments(directory) for record in read_segment(path).records]


def test_both_journals_satisfy_the_protocol(tmp_path: Path) -> None:
    journals: list[Journal] = [MemoryJournal(), FileJournal(tmp_path, next_seq=1)]
    assert [j.last_seq for j in journals] == [0, 0]


@guarded
async def test_group_commit_from_many_tasks(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path, next_seq=1)
    acknowledged: dict[int, str] = {}

    async def writer(name: str) -> None:
        seq = journal.append_nowait({"from": name})
        await journal.wait_durable(seq)
        assert journal.statistics().last_durable_seq >= seq
        acknowledged[seq] = name

    async with running(journal), trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(writer, f"task-{i}")
    stats = journal.statistics()
    assert sorted(acknowledged) == list(range(1, 201))
    assert stats.last_durable_seq == stats.last_synced_seq == 200
    assert 1 <= stats.batches < 200
    assert _on_disk(tmp_path) == [(seq, {"from": acknowledged[seq]}) for seq in range(1, 201)]


@guarded
async def test_everything_queued_is_taken_in_one_batch(tmp_path: Path, spy: SyncSpy) -> None:
    async with running(FileJournal(tmp_path, next_seq=1)) as journal:
        seqs = [journal.append_nowait(n) for n in range(50)]
        await journal.wait_durable(seqs[-1])
        assert journal.statistics().batches == 1
        assert len(spy.calls) == 1
    assert [seq for seq, _ in _on_disk(tmp_path)] == list(range(1, 51))


@guarded
async def test_always_waiter_released_only_after_fsync(tmp_path: Path, spy: SyncSpy) -> None:
    async with running(FileJournal(tmp_path, next_seq=1, fsync="always")) as journal:
        spy.hold()
        seq = journal.append_nowait("x")
        released = trio.Event()

        async def waiter() -> None:
            await journal.wait_durable(seq)
            released.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await spy.wait_entered()  # written, fsync in progress
            await trio.testing.wait_all_tasks_blocked()
            assert not released.is_set()
            assert journal.statistics().last_durable_seq == 0
            spy.release.set()
        assert journal.statistics().last_synced_seq == seq


async def test_interval_releases_after_write_and_syncs_once_per_interval(
    tmp_path: Path, spy: SyncSpy, mock_clock: trio.testing.MockClock
) -> None:
    """On a MockClock moved by hand (no autojump, so a busy worker thread is
    never mistaken for idleness): writes are answered at once, and the fsync
    waits for the interval, whatever the number of writes."""
    async with running(
        FileJournal(tmp_path, next_seq=1, fsync="interval", interval=0.2)
    ) as journal:
        for n in range(10):
            await journal.wait_durable(journal.append_nowait(n))
        stats = journal.statistics()
        assert (stats.last_durable_seq, stats.batches) == (10, 10)
        assert [seq for seq, _ in _on_disk(tmp_path)] == list(range(1, 11))
        assert spy.calls == []  # no virtual time has passed
        mock_clock.jump(0.199)
        await journal.wait_durable(journal.append_nowait(10))
        assert spy.calls == []
        mock_clock.jump(0.002)
        await journal.wait_durable(journal.append_nowait(11))  # due: this batch fsyncs
        assert len(spy.calls) == 1
        assert journal.statistics().last_synced_seq == 12
        for n in range(5):
            await journal.wait_durable(journal.append_nowait(n))
        assert len(spy.calls) == 1  # at most one per interval
        await journal.flush()
        assert journal.statistics().last_synced_seq == 17


async def test_interval_fsyncs_when_idle(
    tmp_path: Path, spy: SyncSpy, mock_clock: trio.testing.MockClock
) -> None:
    journal = FileJournal(tmp_path, next_seq=1, fsync="interval", interval=0.3)
    async with running(journal):
        await journal.wait_durable(journal.append_nowait("x"))
        assert journal.statistics().last_synced_seq == 0
        mock_clock.jump(0.299)
        await trio.testing.wait_all_tasks_blocked()
        assert spy.calls == []
        mock_clock.jump(0.002)  # no further append: the timer does it
        await spy.wait_entered()


@guarded
async def test_interval_flush_forces_fsync(tmp_path: Path, spy: SyncSpy) -> None:
    async with running(FileJournal(tmp_path, next_seq=1, fsync="interval", interval=60)) as journal:
        seq = journal.append_nowait("x")
        await journal.wait_durable(seq)
        assert journal.statistics().last_synced_seq == 0
        assert spy.calls == []
        await journal.flush()
        assert journal.statistics().last_synced_seq == seq
        assert len(spy.calls) == 1


@guarded
async def test_never_writes_without_fsync_until_flush(tmp_path: Path, spy: SyncSpy) -> None:
    async with running(FileJournal(tmp_path, next_seq=1, fsync="never")) as journal:
        for n in range(5):
            await journal.wait_durable(journal.append_nowait(n))
        stats = journal.statistics()
        assert (stats.last_durable_seq, stats.last_synced_seq, spy.calls) == (5, 0, [])
        assert len(_on_disk(tmp_path)) == 5
        await journal.flush()
        assert journal.statistics().last_synced_seq == 5
        await journal.flush()  # nothing new: no second fsync
        assert len(spy.calls) == 1


@guarded
async def test_roll_starts_new_segment(tmp_path: Path) -> None:
    async with running(FileJournal(tmp_path, next_seq=1, fsync="never")) as journal:
        journal.append_nowait("a")
        journal.append_nowait("b")
        await journal.roll()
        assert journal.statistics().last_synced_seq == 2
        await journal.wait_durable(journal.append_nowait("c"))
    assert [p.name for p in list_segments(tmp_path)] == [
        "log-00000000000000000001.bclog",
        "log-00000000000000000003.bclog",
    ]


@guarded
async def test_cancelled_waiter_leaves_nothing_and_write_goes_on(
    tmp_path: Path, spy: SyncSpy
) -> None:
    async with running(FileJournal(tmp_path, next_seq=1)) as journal:
        spy.hold()
        seq = journal.append_nowait("x")
        with trio.move_on_after(0.05) as scope:
            await journal.wait_durable(seq)
        assert scope.cancelled_caught
        assert journal.statistics().waiting == 0
        await spy.wait_entered()
        spy.release.set()
        await journal.wait_durable(seq)
        assert journal.statistics().last_synced_seq == seq
    assert _on_disk(tmp_path) == [(1, "x")]


@guarded
async def test_sync_failure_fails_waiters_and_later_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(FileJournal(tmp_path, next_seq=1)) as journal:
        await journal.wait_durable(journal.append_nowait("durable"))

        def broken_sync(writer: LogWriter) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(LogWriter, "sync", broken_sync)
        causes: list[BaseException | None] = []

        async def waiter(body: str) -> None:
            seq = journal.append_nowait(body)
            with pytest.raises(JournalFailed) as info:
                await journal.wait_durable(seq)
            causes.append(info.value.__cause__)

        with caplog.at_level(logging.ERROR, logger="backchannel.runtime.journal"):
            async with trio.open_nursery() as nursery:
                for n in range(5):
                    nursery.start_soon(waiter, f"lost-{n}")
        assert len(causes) == 5
        assert all(isinstance(cause, OSError) for cause in causes)
        assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records)
        assert journal.statistics().failed
        with pytest.raises(JournalFailed):
            journal.append_nowait("later")
        with pytest.raises(JournalFailed):
            await journal.flush()
        with pytest.raises(JournalFailed):
            await journal.roll()
        await journal.wait_durable(1)  # durable before the failure: still fine
        assert journal.last_seq == 6


@guarded
async def test_write_failure_under_never_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(writer: LogWriter, frames: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LogWriter, "write_frames", no_space)
    async with running(FileJournal(tmp_path, next_seq=1, fsync="never")) as journal:
        seq = journal.append_nowait("x")
        with pytest.raises(JournalFailed, match="No space"):
            await journal.wait_durable(seq)
        assert journal.statistics().failed


@guarded
async def test_unusable_directory_fails_start(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    journal = FileJournal(not_a_dir, next_seq=1)
    async with trio.open_nursery() as nursery:
        with pytest.raises(OSError):  # noqa: PT011 - FileExistsError or NotADirectoryError
            await nursery.start(journal.run)
    assert journal.statistics().failed
    with pytest.raises(JournalFailed):
        journal.append_nowait("x")


@guarded
async def test_cancelling_run_finishes_inflight_and_drains_queue(
    tmp_path: Path, spy: SyncSpy
) -> None:
    journal = FileJournal(tmp_path, next_seq=1)
    stopped = trio.Event()
    scope = trio.CancelScope()

    async def run_journal(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await journal.run(task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        await nursery.start(run_journal)
        spy.hold()
        journal.append_nowait("in flight")
        await spy.wait_entered()
        journal.append_nowait("queued behind")
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert not stopped.is_set()  # still waiting for the fsync thread
        spy.release.set()
        await stopped.wait()
    stats = journal.statistics()
    assert (stats.last_durable_seq, stats.last_synced_seq, stats.failed) == (2, 2, True)
    assert _on_disk(tmp_path) == [(1, "in flight"), (2, "queued behind")]
    await journal.wait_durable(2)
    with pytest.raises(JournalFailed, match="stopped"):
        journal.append_nowait("too late")


@guarded
async def test_restart_continues_after_recovered_seq(tmp_path: Path) -> None:
    async with running(FileJournal(tmp_path, next_seq=1)) as journal:
        for n in range(3):
            journal.append_nowait(n)
        await journal.flush()
    recovered = recover(tmp_path)
    assert recovered.last_seq == 3
    async with running(FileJournal(tmp_path, next_seq=recovered.last_seq + 1)) as journal:
        await journal.wait_durable(journal.append_nowait("after restart"))
    assert recover(tmp_path).records == [(1, 0), (2, 1), (3, 2), (4, "after restart")]


@guarded
async def test_argument_errors(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path, next_seq=10)
    with pytest.raises(TypeError):
        journal.append_nowait(object())
    assert journal.last_seq == 9  # the refused body consumed no seq
    with pytest.raises(ValueError, match="never assigned"):
        await journal.wait_durable(10)
    with pytest.raises(ValueError, match="fsync"):
        FileJournal(tmp_path, next_seq=1, fsync="sometimes")  # type: ignore[arg-type]
    async with running(journal):
        with pytest.raises(RuntimeError, match="once"):
            await journal.run()


@pytest.mark.parametrize("policy", ["always", "interval", "never"])
@guarded
async def test_appends_before_start_are_written(tmp_path: Path, policy: FsyncPolicy) -> None:
    journal = FileJournal(tmp_path, next_seq=1, fsync=policy)
    seq = journal.append_nowait("early")
    async with running(journal):
        await journal.wait_durable(seq)
    assert _on_disk(tmp_path) == [(1, "early")]


@guarded
async def test_memory_journal() -> None:
    journal = MemoryJournal(next_seq=5)
    assert journal.append_nowait({"a": 1}) == 5
    assert journal.append_nowait(b"bytes") == 6
    await journal.wait_durable(6)
    assert journal.records == [(5, {"a": 1}), (6, b"bytes")]
    stats = journal.statistics()
    assert (stats.last_assigned_seq, stats.last_durable_seq, stats.queued) == (6, 6, 0)
    with pytest.raises(TypeError):
        journal.append_nowait(object())
    with pytest.raises(ValueError, match="never assigned"):
        await journal.wait_durable(7)
    journal.fail()
    assert journal.statistics().failed
    with pytest.raises(JournalFailed):
        journal.append_nowait("x")
    with pytest.raises(JournalFailed):
        await journal.flush()
    await journal.wait_durable(6)
