"""The published ``backchannel-sdk`` drives our server unchanged.

Both clients are used exactly as their README shows; the sync client runs in
a worker thread because it blocks.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from backchannel_sdk import BackchannelClient, BackchannelError
from backchannel_sdk.client import AsyncBackchannelClient

from tests.conftest import Server


async def _sync(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await trio.to_thread.run_sync(partial(fn, *args, **kwargs))


async def test_sync_client_canonical_path(server: Server) -> None:
    minted = await _sync(BackchannelClient.issue_key, "sdk-producer", base_url=server.url)
    assert minted["key"].startswith("bck_")
    worker_key = (await _sync(BackchannelClient.issue_key, "sdk-worker", base_url=server.url))[
        "key"
    ]
    producer = BackchannelClient(minted["key"], base_url=server.url)
    worker = BackchannelClient(worker_key, base_url=server.url)
    try:
        channel = await _sync(producer.create_channel, "sdk-jobs", mode="claimable")
        sent = await _sync(producer.send_message, channel["id"], "build it", actor_label="p")
        assert sent["content"] == "build it"
        page = await _sync(worker.list_messages, channel["id"], since="0")
        assert [m["id"] for m in page["data"]] == [sent["id"]]
        claimed = await _sync(worker.claim_message, sent["id"], actor="builder")
        assert claimed["status"] == "claimed"
        assert claimed["message"]["claimed_by"]["name"] == "builder"
        with pytest.raises(BackchannelError) as lost:
            await _sync(producer.claim_message, sent["id"], actor="someone-else")
        assert lost.value.status == 409
        assert lost.value.error == "already_claimed"
        acked = await _sync(worker.ack_message, sent["id"], actor="builder")
        assert acked["status"] == "acknowledged"
        again = await _sync(producer.get_channel, channel["id"])
        assert again["id"] == channel["id"]
        found = await _sync(worker.discover_channels)
        assert channel["id"] in [c["id"] for c in found["data"]]
    finally:
        producer.close()
        worker.close()


async def test_sync_client_long_poll_returns_when_a_message_lands(server: Server) -> None:
    key = (await _sync(BackchannelClient.issue_key, "sdk-poller", base_url=server.url))["key"]
    client = BackchannelClient(key, base_url=server.url)
    poster = await server.agent("sdk-poster")
    try:
        channel = await _sync(client.create_channel, "sdk-feed", mode="broadcast")
        first = await _sync(client.list_messages, channel["id"], since="0")
        cursor = first["next_cursor"]
        results: list[dict[str, Any]] = []
        elapsed: list[float] = []

        async def poll() -> None:
            started = trio.current_time()
            results.append(await _sync(client.list_messages, channel["id"], since=cursor, wait=10))
            elapsed.append(trio.current_time() - started)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(poll)
                await trio.sleep(0.3)  # let the poll park on the server
                await poster.send(channel["id"], "wake up")
        assert [m["content"] for m in results[0]["data"]] == ["wake up"]
        assert elapsed[0] < 5
    finally:
        client.close()


async def test_async_client_canonical_path(server: Server) -> None:
    producer_key = (await server.agent("sdk-async-producer")).key
    worker_key = (await server.agent("sdk-async-worker")).key
    async with (
        AsyncBackchannelClient(producer_key, base_url=server.url) as producer,
        AsyncBackchannelClient(worker_key, base_url=server.url) as worker,
    ):
        channel = await producer.create_channel("sdk-async-jobs", mode="claimable")
        sent = await producer.send_message(channel["id"], "task", actor_label="p")
        page = await worker.list_messages(channel["id"], since="0")
        assert [m["id"] for m in page["data"]] == [sent["id"]]
        claimed = await worker.claim_message(sent["id"], actor="w")
        assert claimed["status"] == "claimed"
        with pytest.raises(BackchannelError) as lost:
            await producer.claim_message(sent["id"], actor="other")
        assert (lost.value.status, lost.value.error) == (409, "already_claimed")
        acked = await worker.ack_message(sent["id"], actor="w")
        assert acked["status"] == "acknowledged"


async def test_errors_reach_both_clients_as_backchannel_error(server: Server) -> None:
    key = (await server.agent("sdk-errors")).key
    sync_client = BackchannelClient(key, base_url=server.url)
    stranger = BackchannelClient("bck_nope.not-a-key", base_url=server.url)
    try:
        with pytest.raises(BackchannelError) as unknown:
            await _sync(sync_client.claim_message, "no-such-message", actor="w")
        assert (unknown.value.status, unknown.value.error) == (404, "message_not_found")
        assert unknown.value.message
        with pytest.raises(BackchannelError) as bad_mode:
            await _sync(sync_client.create_channel, "sdk-bad", mode="fanout")
        assert (bad_mode.value.status, bad_mode.value.error) == (422, "invalid_mode")
        with pytest.raises(BackchannelError) as unauthorized:
            await _sync(stranger.get_channel, "sandbox")
        assert (unauthorized.value.status, unauthorized.value.error) == (401, "unauthorized")
    finally:
        sync_client.close()
        stranger.close()
    async with AsyncBackchannelClient(key, base_url=server.url) as client:
        with pytest.raises(BackchannelError) as missing:
            await client.ack_message("no-such-message", actor="w")
        assert (missing.value.status, missing.value.error) == (404, "message_not_found")
        channel = await client.create_channel("sdk-broadcast", mode="broadcast")
        sent = await client.send_message(channel["id"], "hello")
        with pytest.raises(BackchannelError) as not_claimable:
            await client.claim_message(sent["id"], actor="w")
        assert (not_claimable.value.status, not_claimable.value.error) == (
            409,
            "channel_not_claimable",
        )
