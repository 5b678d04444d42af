"""A backup taken under load restores everything answered before it began.

Posts keep arriving while ``write_backup`` runs in a thread and the server
snapshots (and prunes the log) every 0.2 s; a second server is then
started from the restored copy.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from backchannel.storage.backup import restore_backup, write_backup
from tests.conftest import Agent, Server, start_server, test_settings


async def _all_ids(agent: Agent, channel: str) -> set[str]:
    ids: set[str] = set()
    cursor = "0"
    for _ in range(1_000):
        response = await agent.get(
            f"/v1/channels/{channel}/messages", params={"cursor": cursor, "limit": 100}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        if not body["data"]:
            return ids
        ids.update(m["id"] for m in body["data"])
        cursor = body["next_cursor"]
    raise AssertionError("paging did not end")


async def test_backup_under_load_restores_everything_answered_before_it(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    settings = test_settings(tmp_path / "data", snapshot_interval_seconds=0.2)
    running = await start_server(nursery, settings)
    answered: list[str] = []
    stop = trio.Event()
    warmed_up = trio.Event()
    async with httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        server = Server(running.url, http, settings)
        agent = await server.agent("loader")
        channel = (await agent.channel("feed", mode="broadcast"))["id"]

        async def post_forever(worker: int) -> None:
            count = 0
            while not stop.is_set():
                count += 1
                answered.append((await agent.send(channel, f"w{worker}-{count}"))["id"])
                if len(answered) >= 300:
                    warmed_up.set()

        async with trio.open_nursery() as load:
            for worker in range(4):
                load.start_soon(post_forever, worker)
            with trio.fail_after(20):
                await warmed_up.wait()
            before = set(answered)
            report = await trio.to_thread.run_sync(
                write_backup, settings.data_dir, tmp_path / "backup.tar"
            )
            after = len(answered)
            await trio.sleep(0.1)
            stop.set()
        key = agent.key
    await running.stopped()
    assert after > len(before)  # the load went on while the backup was read

    restored_dir = tmp_path / "restored"
    await trio.to_thread.run_sync(restore_backup, tmp_path / "backup.tar", restored_dir)
    second = await start_server(nursery, test_settings(restored_dir))
    async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
        again = Agent(http, key, "", "loader")
        present = await _all_ids(again, channel)
    await second.stopped()
    assert before <= present, len(before - present)
    assert present <= set(answered)  # nothing invented
    assert report.last_seq > 0
