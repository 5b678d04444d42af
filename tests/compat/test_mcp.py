"""The published ``backchannel-mcp`` server's tools drive our server unchanged.

Its tools run on asyncio, so each scenario runs in a worker thread under
``asyncio.run``; ``TOOL_IMPL`` is the table its MCP ``call_tool`` dispatches
through. The key and base URL come from the environment, as in production,
so nothing is read from or written to the home directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from backchannel_mcp.client import BackchannelClient, BackchannelError
from backchannel_mcp.server import TOOL_IMPL

from tests.conftest import Server


async def _in_asyncio(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return await trio.to_thread.run_sync(lambda: asyncio.run(scenario()))  # type: ignore[arg-type]


async def test_mcp_tools_post_claim_and_await_a_task(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = await server.agent("mcp-agent")
    monkeypatch.setenv("BACKCHANNEL_BASE_URL", server.url)
    monkeypatch.setenv("BACKCHANNEL_API_KEY", agent.key)

    async def scenario() -> dict[str, Any]:
        posted = await TOOL_IMPL["post_task"]({"channel": "mcp-jobs", "content": "summarise"})
        channel = posted["channel"]
        claimed = await TOOL_IMPL["claim_task"]({"channel": channel, "actor": "mcp-worker"})
        empty = await TOOL_IMPL["claim_task"]({"channel": channel, "actor": "mcp-other"})
        async with BackchannelClient(api_key=agent.key, base_url=server.url) as client:
            acked = await client.ack_message(posted["message_id"], actor="mcp-worker")
        awaited = await TOOL_IMPL["await_result"](
            {"channel": channel, "message_id": posted["message_id"], "timeout_seconds": 5}
        )
        seen = await TOOL_IMPL["subscribe"]({"channel": channel, "since": "0"})
        listed = await TOOL_IMPL["list_channels"]({})
        shout = await TOOL_IMPL["broadcast"]({"channel": "mcp-news", "content": "hello all"})
        return {
            "posted": posted,
            "claimed": claimed,
            "empty": empty,
            "acked": acked,
            "awaited": awaited,
            "seen": seen,
            "listed": listed,
            "shout": shout,
        }

    result = await _in_asyncio(scenario)
    posted = result["posted"]
    assert posted["message_id"]
    assert posted["envelope"]["message"]["content"] == "summarise"
    claim = result["claimed"]["claimed"]
    assert claim["status"] == "claimed"
    assert claim["message"]["claimed_by"]["name"] == "mcp-worker"
    assert result["empty"]["claimed"] is None
    assert result["acked"]["status"] == "acknowledged"
    assert result["awaited"]["status"] == "acknowledged"
    assert [m["id"] for m in result["seen"]["data"]] == [posted["message_id"]]
    assert posted["channel"] in [c["id"] for c in result["listed"]["data"]]
    assert result["shout"]["message"]["content"] == "hello all"


async def test_mcp_client_idempotent_retries_and_conflicts(server: Server) -> None:
    producer = await server.agent("mcp-producer")
    rival = await server.agent("mcp-rival")
    channel = await producer.channel("mcp-queue", "claimable")
    message = await producer.send(channel["id"], "one job")

    async def scenario() -> dict[str, Any]:
        async with (
            BackchannelClient(api_key=producer.key, base_url=server.url) as mine,
            BackchannelClient(api_key=rival.key, base_url=server.url) as theirs,
        ):
            me = await mine.keys_me()
            first = await mine.ensure_actor("mcp-bot")
            second = await mine.ensure_actor("mcp-bot")  # replayed by Idempotency-Key
            claimed = await mine.claim_message(message["id"], actor="mcp-bot")
            retried = await mine.claim_message(message["id"], actor="mcp-bot")
            try:
                await theirs.claim_message(message["id"], actor="mcp-thief")
            except BackchannelError as exc:
                conflict = (exc.status, exc.payload["error"])
            both = await mine.ack_message(message["id"], actor="mcp-bot")
            return {
                "me": me,
                "ids": (first, second),
                "claimed": claimed,
                "retried": retried,
                "conflict": conflict,
                "acked": both,
            }

    result = await _in_asyncio(scenario)
    assert result["me"]["key_id"] == producer.key_id
    assert result["ids"][0] == result["ids"][1]
    assert result["claimed"]["status"] == "claimed"
    assert result["retried"] == result["claimed"]
    assert result["conflict"] == (409, "already_claimed")
    assert result["acked"]["status"] == "acknowledged"


async def test_mcp_tools_request_access_to_a_restricted_channel(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The published tools find a restricted lane, ask in, and read once approved."""
    owner = await server.agent("mcp-owner")
    channel = await owner.channel(
        "mcp-private", "broadcast", access="restricted", discoverable=True
    )
    await owner.send(channel["id"], "members only")
    guest = await server.agent("mcp-guest")
    monkeypatch.setenv("BACKCHANNEL_BASE_URL", server.url)
    monkeypatch.setenv("BACKCHANNEL_API_KEY", guest.key)

    async def ask() -> dict[str, Any]:
        listed = await TOOL_IMPL["list_channels"]({})
        try:
            await TOOL_IMPL["subscribe"]({"channel": channel["id"], "since": "0"})
        except BackchannelError as exc:
            refused = (exc.status, exc.payload["error"])
        asked = await TOOL_IMPL["request_access"]({"channel": channel["id"]})
        return {"listed": listed, "refused": refused, "asked": asked}

    before = await _in_asyncio(ask)
    entry = next(c for c in before["listed"]["data"] if c["id"] == channel["id"])
    assert (entry["access"], entry["is_member"]) == ("restricted", False)
    assert before["refused"] == (403, "channel_access_denied")
    assert before["asked"]["status"] == "pending"
    request_id = before["asked"]["request_id"]

    approved = await owner.post(
        f"/v1/channels/{channel['id']}/access-requests/{request_id}/approve", {}
    )
    assert approved.status_code == 200, approved.text

    async def read() -> dict[str, Any]:
        seen: dict[str, Any] = await TOOL_IMPL["subscribe"](
            {"channel": channel["id"], "since": "0"}
        )
        return seen

    after = await _in_asyncio(read)
    assert [m["content"] for m in after["data"]] == ["members only"]
