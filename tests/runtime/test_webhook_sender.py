"""Mention webhooks through the runtime, to a real loopback receiver (§3.13).

Actor webhook registration routes live on another branch; here the
registration is the ``ActorWebhookSet`` event they journal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from pathlib import Path
from typing import Any

import httpcore
import pytest
import trio

from backchannel.core.events import ActorWebhookSet
from backchannel.core.outbox import decide_member_added
from backchannel.http.views import message_view
from backchannel.runtime import webhooks
from backchannel.runtime.hub import Hub
from backchannel.runtime.service import open_runtime
from tests.conftest import test_settings
from tests.receiver import Receiver


async def _post(hub: Hub, channel_id: str, key_label: str, mentions: list[str]) -> None:
    key = hub.world.keys[hub.world.active_labels[key_label]]
    actor = hub.actors[channel_id]
    await actor.call(actor.cmd_post, key, "ping", {}, None, None, mentions)


async def test_a_mention_is_pushed_once_a_minute_per_channel_and_actor(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    receiver = Receiver()
    url = await receiver.serve(nursery)
    settings = test_settings(tmp_path / "data", webhook_allow_private=True)
    async with open_runtime(settings, in_memory=True) as hub:
        hub.render_message = message_view
        _raw, alice = await hub.mint_key("alice")
        bot = await hub.create_actor(alice, "bot", "", {})
        hub.commit_global(ActorWebhookSet(bot, url, "actor-secret", hub.clock.now()))
        spec = {**hub.channel_defaults("open"), "name": "room", "mode": "broadcast"}
        room = (await hub.create_channel(alice, spec, [])).config.id
        other = (await hub.create_channel(alice, {**spec, "name": "other"}, [])).config.id
        await _post(hub, room, "alice", [bot])
        (got,) = await receiver.wait_for(1)
        assert got.headers["x-backchannel-event"] == "mention"
        signed = hmac.new(b"actor-secret", got.body, hashlib.sha256).hexdigest()
        assert got.headers["x-backchannel-signature"] == f"sha256={signed}"
        body = json.loads(got.body)
        assert body["mentioned_actor_id"] == bot
        assert body["message"]["mentions"] == [{"id": bot, "name": "bot"}]
        await _post(hub, room, "alice", [bot])  # within the minute: dropped
        await _post(hub, other, "alice", [bot])  # another channel: its own minute
        await receiver.wait_for(2)
        await trio.sleep(0.5)
        assert len(receiver.requests) == 2
        assert json.loads(receiver.requests[1].body)["message"]["channel_id"] == other
        assert hub.world.outbox.pending == {}


async def test_an_ineligible_mention_is_not_pushed(nursery: trio.Nursery, tmp_path: Path) -> None:
    receiver = Receiver()
    url = await receiver.serve(nursery)
    settings = test_settings(tmp_path / "data", webhook_allow_private=True)
    async with open_runtime(settings, in_memory=True) as hub:
        hub.render_message = message_view
        _raw, alice = await hub.mint_key("alice")
        _raw, mallory = await hub.mint_key("mallory")
        outsider = await hub.create_actor(mallory, "outsider", "", {})
        hub.commit_global(ActorWebhookSet(outsider, url, None, hub.clock.now()))
        spec = {**hub.channel_defaults("restricted"), "name": "private", "mode": "broadcast"}
        private = (await hub.create_channel(alice, spec, [])).config.id
        await _post(hub, private, "alice", [outsider])
        await trio.sleep(0.3)
        assert receiver.requests == []


async def test_a_hanging_receiver_holds_a_bounded_number_of_tasks(
    nursery: trio.Nursery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "MAX_TASKS_PER_RECEIVER", 3)
    receiver = Receiver(hang=True)
    url = await receiver.serve(nursery)
    settings = test_settings(
        tmp_path / "data",
        webhook_allow_private=True,
        webhook_per_host_concurrency=2,
        webhook_timeout_seconds=1.0,
        webhook_retry_seconds="0.1",
    )
    async with open_runtime(settings, in_memory=True) as hub:
        hub.render_message = message_view
        _raw, alice = await hub.mint_key("alice")
        spec = {**hub.channel_defaults("open"), "name": "c", "mode": "broadcast"}
        spec["webhook_url"] = url
        channel = (await hub.create_channel(alice, spec, [])).config.id
        for _ in range(6):
            await _post(hub, channel, "alice", [])
        await receiver.wait_for(1)
        await trio.sleep(0.3)
        assert hub.sender is not None
        (busy,) = hub.sender._receivers.values()
        assert busy.tasks == 3  # one posting (slow start: one slot), two waiting for it
        assert len(busy.backlog) == 3  # waiting for a task
        assert len(receiver.requests) == 1
        receiver.hang = False
        for _ in range(200):
            if not hub.world.outbox.pending:
                break
            await trio.sleep(0.05)
        delivered = {r.headers["x-backchannel-delivery"] for r in receiver.requests}
        assert len(delivered) == 6
        assert busy.tasks == 0
        assert not busy.backlog


async def test_the_target_guard_connects_only_to_addresses_it_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "public.example": ["93.184.216.34"],
        "mixed.example": ["93.184.216.34", "10.0.0.1"],
        "inside.example": ["127.0.0.1"],
    }
    connected: list[str] = []

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    async def connect_tcp(self: Any, host: str, port: int, *args: Any) -> Any:
        connected.append(host)
        raise httpcore.ConnectError("unreachable in this test")

    monkeypatch.setattr(trio.socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(httpcore.TrioBackend, "connect_tcp", connect_tcp)
    guard = webhooks._PublicOnly()
    with pytest.raises(httpcore.ConnectError, match="unreachable"):
        await guard.connect_tcp("public.example", 443)
    assert connected == ["93.184.216.34"]  # the checked address, not the name again
    for host in ("mixed.example", "inside.example", "localhost", "10.1.2.3"):
        with pytest.raises(httpcore.ConnectError, match="refused:"):
            await guard.connect_tcp(host, 443)
    assert connected == ["93.184.216.34"]


async def test_member_added_is_delivered_once_queued(nursery: trio.Nursery, tmp_path: Path) -> None:
    """The access-request approval (another branch) needs only to queue this delivery."""
    receiver = Receiver()
    url = await receiver.serve(nursery)
    settings = test_settings(tmp_path / "data", webhook_allow_private=True)
    async with open_runtime(settings, in_memory=True) as hub:
        _raw, alice = await hub.mint_key("alice")
        spec = {**hub.channel_defaults("restricted"), "name": "c", "mode": "broadcast"}
        spec.update(webhook_url=url, webhook_secret="s")
        config = (await hub.create_channel(alice, spec, [])).config
        queued = decide_member_added(config, "bck_newcomer", alice.key_id, hub.clock.now())
        assert queued is not None
        hub.queue_webhooks([queued])
        (got,) = await receiver.wait_for(1)
        assert got.headers["x-backchannel-event"] == "member_added"
        assert json.loads(got.body) == {
            "channel_id": config.id,
            "member_key_id": "bck_newcomer",
            "approved_by": alice.key_id,
        }


def test_slow_start_per_receiver() -> None:
    receiver = webhooks._Receiver(8)
    seen = [receiver.limiter.total_tokens]
    for _ in range(4):
        receiver.answered(None)
        seen.append(receiver.limiter.total_tokens)
    assert seen == [1, 2, 4, 8, 8]
    receiver.answered("HTTP 500")  # it answered: still responsive
    assert receiver.limiter.total_tokens == 8
    receiver.answered("timeout after 10s")
    assert receiver.limiter.total_tokens == 1
    receiver.answered(None)
    receiver.answered("ConnectError: [Errno 111] Connection refused")
    assert receiver.limiter.total_tokens == 1
