"""Snapshots on disk: pruning keeps what a fallback needs; the operator commands.

These run the real runtime with its file journal on the real clock (no
MockClock: worker-thread fsyncs would confuse autojump, style.md 10), with
periodic snapshots off so that the test decides when each one is taken.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from backchannel import cli
from backchannel.core.records import KeyRecord
from backchannel.runtime.actor import ChannelActor
from backchannel.runtime.hub import Hub
from backchannel.runtime.service import open_runtime
from backchannel.runtime.snapshotter import take_snapshot
from backchannel.storage.log import list_segments
from backchannel.storage.snapshot import list_snapshots
from tests.conftest import test_settings


@asynccontextmanager
async def runtime(data_dir: Path) -> AsyncIterator[Hub]:
    settings = test_settings(data_dir, sandbox_enabled=False)
    async with open_runtime(settings) as hub:
        yield hub


async def open_channel(hub: Hub, key: KeyRecord, name: str, mode: str) -> ChannelActor:
    spec = hub.channel_defaults("open")
    spec.update(name=name, mode=mode)
    state = await hub.create_channel(key, spec, [])
    return hub.actors[state.config.id]


async def post(actor: ChannelActor, key: KeyRecord, content: str) -> str:
    message: Any = await actor.call(actor.cmd_post, key, content, {}, None, None, None)
    return str(message.id)


async def snapshot(hub: Hub, data_dir: Path) -> None:
    """What the periodic snapshotter does: roll the log, then snapshot."""
    await hub.journal.roll()
    await take_snapshot(hub, data_dir)


def contents(hub: Hub) -> dict[str, list[str]]:
    return {
        state.config.name: [m.content for m in state.live.values()]
        for state in hub.world.channels.values()
    }


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


async def test_pruning_keeps_the_log_the_older_snapshot_needs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    async with runtime(data_dir) as hub:
        _raw, key = await hub.mint_key("owner")
        jobs = await open_channel(hub, key, "jobs", "claimable")
        await post(jobs, key, "m1")
        await snapshot(hub, data_dir)
        await post(jobs, key, "m2")
        await hub.journal.roll()
        await post(jobs, key, "m3")
        await snapshot(hub, data_dir)  # keeps this one and the first
        await post(jobs, key, "m4")
        await hub.journal.roll()
        await post(jobs, key, "m5")
        await hub.journal.roll()
        expected = contents(hub)
    # shutdown wrote a third snapshot; the two newest remain
    newest, _older = list_snapshots(data_dir)
    flip_last_byte(newest)  # the newest is lost: recovery must fall back to the older

    async with runtime(data_dir) as hub:
        assert contents(hub) == expected
        assert expected == {"jobs": ["m1", "m2", "m3", "m4", "m5"]}
    assert (data_dir / (newest.name + ".corrupt")).exists()


async def test_snapshot_inspect_and_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "data"
    async with runtime(data_dir) as hub:
        _raw, owner = await hub.mint_key("owner")
        await hub.mint_key("worker")
        jobs = await open_channel(hub, owner, "jobs", "claimable")
        news = await open_channel(hub, owner, "news", "broadcast")
        first = await post(jobs, owner, "j1")
        await post(jobs, owner, "j2")
        await post(news, owner, "n1")
        await jobs.call(jobs.cmd_claim, owner, first, None, 60_000_000)
        await jobs.call(jobs.cmd_retract, owner, await post(jobs, owner, "gone"))
        jobs_id, news_id = jobs.channel_id, news.channel_id
    [path] = list_snapshots(data_dir)
    capsys.readouterr()

    assert cli.main(["snapshot", "inspect", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    seq = int(path.name.split("-")[1].split(".")[0])
    assert lines[0] == f"snapshot {path.name}: seq={seq} bytes={path.stat().st_size}"
    assert lines[1] == "keys=2 actors=2 channels=2 live_messages=3 idempotency_entries=0"
    channels = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines[2:]}
    assert channels.keys() == {jobs_id, news_id}
    assert channels[jobs_id].startswith(
        "'jobs' mode=claimable live=2 history=1 leases=1 covers_seq="
    )
    assert channels[news_id].startswith(
        "'news' mode=broadcast live=1 history=0 leases=0 covers_seq="
    )
    covers = {cid: int(text.rsplit("=", 1)[1]) for cid, text in channels.items()}
    assert 0 < covers[news_id] < covers[jobs_id] <= seq  # the retraction came last

    assert cli.main(["snapshot", "verify", str(data_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ok   {path.name} seq={seq}"
    assert all(line.startswith("ok   log-") for line in out[1:-1])
    assert len(out) - 2 == len(list_segments(data_dir)) >= 1
    assert out[-1] == "0 problem(s)"

    segment = list_segments(data_dir)[0]
    flip_last_byte(segment)
    misnamed = data_dir / f"snapshot-{seq + 1:020d}.bcsnap"
    misnamed.write_bytes(path.read_bytes())  # its header says another seq
    flip_last_byte(path)
    assert cli.main(["snapshot", "verify", str(data_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"BAD  {misnamed.name}: corrupt snapshot")
    assert out[1].startswith(f"BAD  {path.name}: corrupt snapshot")
    assert any(line.startswith(f"BAD  {segment.name}: crc at offset ") for line in out)
    assert out[-1] == "3 problem(s)"

    assert cli.main(["snapshot", "inspect", str(path)]) == 1
    assert "cannot read snapshot" in capsys.readouterr().err
    assert cli.main(["snapshot", "verify", str(tmp_path / "missing")]) == 1
    assert "not a directory" in capsys.readouterr().err
