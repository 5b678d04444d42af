"""A bug surfaces as one 500 in our envelope, and the server keeps serving.

README "Decisions": an unexpected exception in a channel command is logged
and answered as a 500 to that caller; the actor keeps serving. The request
pipeline has the same catch-all for a bug outside any actor. The bug is
planted with ``monkeypatch`` on the real code path of one request.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from backchannel.core.channel import ChannelState
from backchannel.runtime.hub import Hub
from tests.conftest import Server, assert_error


class Planted(RuntimeError):
    """The bug."""


async def test_a_bug_in_a_channel_command_is_a_500_and_the_channel_keeps_serving(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "claimable"))["id"]
    first = await alice.send(channel, "before")
    stock = ChannelState.decide_post

    def decide_post(self: ChannelState, **kw: Any) -> Any:
        if kw["content"] == "boom":
            raise Planted("planted bug")
        return stock(self, **kw)

    monkeypatch.setattr(ChannelState, "decide_post", decide_post)
    with caplog.at_level(logging.ERROR):
        failed = await alice.post(f"/v1/channels/{channel}/messages", {"content": "boom"})
    body = assert_error(failed, 500, "internal_server_error")
    assert "planted" not in body["message"]  # no internals leak to the client
    [record] = [r for r in caplog.records if r.name == "backchannel.runtime.actor"]
    assert "cmd_post failed in channel" in record.getMessage()
    assert record.exc_info is not None
    assert record.exc_info[0] is Planted

    # the same actor goes on: it posts, claims and lists as before
    after = await alice.send(channel, "after")
    claimed = await alice.post(f"/v1/messages/{first['id']}/claim", {})
    assert claimed.status_code == 200, claimed.text
    listed = await alice.get(f"/v1/channels/{channel}/messages")
    assert [m["id"] for m in listed.json()["data"]] == [first["id"], after["id"]]


async def test_a_bug_outside_any_actor_is_a_500_and_the_server_keeps_serving(
    server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "broadcast"))["id"]
    stock = Hub.channel_actor

    def channel_actor(self: Hub, identifier: str, key: Any) -> Any:
        if identifier == "cursed":
            raise Planted("planted bug")
        return stock(self, identifier, key)

    monkeypatch.setattr(Hub, "channel_actor", channel_actor)
    with caplog.at_level(logging.ERROR):
        failed = await alice.get("/v1/channels/cursed/messages")
    assert_error(failed, 500, "internal_server_error")
    [record] = [r for r in caplog.records if r.name == "backchannel.http.api"]
    assert record.getMessage().startswith("unexpected error in list_messages (request ")
    assert failed.json()["request_id"] in record.getMessage()

    # the same connection and server go on
    sent = await alice.send(channel, "still here")
    listed = await alice.get(f"/v1/channels/{channel}/messages")
    assert [m["id"] for m in listed.json()["data"]] == [sent["id"]]
