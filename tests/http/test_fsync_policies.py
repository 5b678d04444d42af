"""``--fsync always|interval|never`` end to end: a real server, real files.

Each test counts the fsyncs of log segments (``os.fsync`` on a
``log-*.bclog`` file descriptor) while answered posts go by, reads the
segments back to see the answered records are written, and restarts the
server on the same directory to see them recovered.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from backchannel.core.events import MessagePosted, from_wire
from backchannel.storage.log import list_segments, read_segment
from tests.conftest import serving


class LogFsyncs:
    """Counts fsyncs of log segment files; wakes the test on each one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.event = trio.Event()
        stock = os.fsync
        token = trio.lowlevel.current_trio_token()

        def fsync(fd: int) -> None:
            stock(fd)
            if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith("log-"):
                self.count += 1
                token.run_sync_soon(self.event.set)

        monkeypatch.setattr(os, "fsync", fsync)

    async def wait(self) -> None:
        await self.event.wait()
        self.event = trio.Event()


def posted_contents(data_dir: Path) -> list[str]:
    """Contents of every post record in the log, in order."""
    out: list[str] = []
    for segment in list_segments(data_dir):
        for _seq, body in read_segment(segment).records:
            if body[0] == MessagePosted.kind:
                out.append(from_wire(body).content)  # type: ignore[union-attr]
    return out


async def restarted_contents(
    nursery: trio.Nursery, tmp_path: Path, channel: str, key: str
) -> list[str]:
    async with serving(nursery, tmp_path) as server:
        listed = await server.http.get(
            f"/v1/channels/{channel}/messages", headers={"X-API-Key": key}
        )
    return [m["content"] for m in listed.json()["data"]]


async def test_always_fsyncs_before_each_answer(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(nursery, tmp_path, fsync="always") as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("jobs", "broadcast"))["id"]
        fsyncs = LogFsyncs(monkeypatch)
        for n in range(5):
            before = fsyncs.count
            await alice.send(channel, f"m{n}")
            assert fsyncs.count > before  # one group commit per lone post
    assert await restarted_contents(nursery, tmp_path, channel, alice.key) == [
        f"m{n}" for n in range(5)
    ]


async def test_never_answers_without_fsync_and_the_write_is_in_the_file(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    async with serving(nursery, tmp_path, fsync="never") as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("jobs", "broadcast"))["id"]
        fsyncs = LogFsyncs(monkeypatch)
        for n in range(5):
            await alice.send(channel, f"m{n}")
            assert posted_contents(data_dir) == [f"m{i}" for i in range(n + 1)]
        assert fsyncs.count == 0
    assert fsyncs.count > 0  # a clean stop flushes
    assert await restarted_contents(nursery, tmp_path, channel, alice.key) == [
        f"m{n}" for n in range(5)
    ]


async def test_interval_answers_without_fsync_and_fsyncs_once_idle(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    async with serving(nursery, tmp_path, fsync="interval", fsync_interval_seconds=3600) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("jobs", "broadcast"))["id"]
        fsyncs = LogFsyncs(monkeypatch)
        for n in range(5):
            await alice.send(channel, f"m{n}")
            assert posted_contents(data_dir) == [f"m{i}" for i in range(n + 1)]
        assert fsyncs.count == 0  # the hour has not passed
    assert await restarted_contents(nursery, tmp_path, channel, alice.key) == [
        f"m{n}" for n in range(5)
    ]


async def test_interval_fsyncs_after_the_interval_without_further_writes(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(nursery, tmp_path, fsync="interval", fsync_interval_seconds=0.2) as server:
        alice = await server.agent("alice")
        channel = (await alice.channel("jobs", "broadcast"))["id"]
        fsyncs = LogFsyncs(monkeypatch)
        with trio.fail_after(10):
            await fsyncs.wait()  # the writes before: setup's
            await alice.send(channel, "last")
            await fsyncs.wait()  # nothing else happens; the timer does it
        assert fsyncs.count >= 2
