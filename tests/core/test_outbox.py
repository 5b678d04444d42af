"""The webhook outbox as a pure state machine: queueing, attempts, mentions, replay."""

from __future__ import annotations

import json
from typing import Any

from backchannel.core.events import (
    ActorWebhookSet,
    ChannelCreated,
    Event,
    KeyMinted,
    WebhookAttempted,
    WebhookQueued,
    from_wire,
    to_wire,
)
from backchannel.core.outbox import (
    MENTION_INTERVAL_US,
    decide_member_added,
    forbidden_address,
    literal_target_refused,
)
from backchannel.core.world import World
from backchannel.storage.state import load_snapshot_payload, pack_registry, pack_snapshot

SECOND = 1_000_000
SCHEDULE = (60.0, 120.0, 240.0, 300.0)
MESSAGE = {"id": "m1", "content": "hi"}


class Log:
    """A world plus the events that made it, through the wire form as the journal would."""

    def __init__(self) -> None:
        self.world = World()
        self.events: list[Event] = []

    def commit(self, event: Event) -> None:
        event = from_wire(to_wire(event))
        self.events.append(event)
        self.world.apply(event, len(self.events))

    def replayed(self) -> World:
        world = World()
        for seq, event in enumerate(self.events, 1):
            world.apply(event, seq)
        return world


def _world_with_channel(webhook_url: str | None = "https://hooks.example.com/c") -> Log:
    log = Log()
    log.commit(KeyMinted("bck_k", "h", "owner", "owner", 0, "actor-owner"))
    config: dict[str, Any] = {
        "id": "c1",
        "owner_id": "owner",
        "owner_key_id": "bck_k",
        "name": "c",
        "mode": "broadcast",
        "access": "open",
        "discoverable": True,
        "description": "",
        "metadata_schema": {},
        "pinned_message": None,
        "ttl_seconds": 300,
        "retention_days": 1,
        "max_messages": None,
        "max_writes_per_minute": None,
        "webhook_url": webhook_url,
        "webhook_secret": "s",
        "created_at": 0,
        "updated_at": 0,
        "related_channels": [],
    }
    log.commit(ChannelCreated("c1", config, [], 0))
    return log


def _decide(log: Log, now: int, mentions: list[list[str]] | None = None) -> list[WebhookQueued]:
    world = log.world
    config = world.channels["c1"].config
    return world.outbox.decide_message(config, MESSAGE, mentions or [], world.webhooks.hooks, now)


def test_a_post_queues_one_channel_delivery_with_the_exact_body() -> None:
    log = _world_with_channel()
    (queued,) = _decide(log, 5)
    assert queued.event == "message.created"
    assert queued.url == "https://hooks.example.com/c"
    assert queued.secret == "s"
    assert queued.body == json.dumps({"message": MESSAGE}).encode()
    assert _decide(_world_with_channel(None), 5) == []
    log.commit(queued)
    assert log.world.outbox.pending[queued.delivery_id].next_attempt_at == 5


def test_failures_follow_the_schedule_then_give_up_after_five_attempts() -> None:
    log = _world_with_channel()
    (queued,) = _decide(log, 0)
    log.commit(queued)
    outbox = log.world.outbox
    now = 0
    waits = []
    for _ in range(4):
        delivery = outbox.pending[queued.delivery_id]
        attempt = outbox.decide_attempt(delivery, now, "HTTP 500", SCHEDULE)
        assert attempt.outcome == "failed"
        assert attempt.next_attempt_at is not None
        waits.append((attempt.next_attempt_at - now) / SECOND)
        log.commit(attempt)
        now = attempt.next_attempt_at
    assert waits == [60, 120, 240, 300]
    last = outbox.decide_attempt(outbox.pending[queued.delivery_id], now, "timeout", SCHEDULE)
    assert last.outcome == "given_up"
    log.commit(last)
    assert outbox.pending == {}
    assert outbox.given_up == 1
    assert outbox.delivered == 0


def test_a_success_ends_the_delivery_and_a_late_attempt_changes_nothing() -> None:
    log = _world_with_channel()
    (queued,) = _decide(log, 0)
    log.commit(queued)
    outbox = log.world.outbox
    delivery = outbox.pending[queued.delivery_id]
    log.commit(outbox.decide_attempt(delivery, 1, None, SCHEDULE))
    assert outbox.pending == {}
    assert outbox.delivered == 1
    log.commit(WebhookAttempted(queued.delivery_id, 2, "failed", 99, "late"))
    assert outbox.pending == {}


def test_mentions_push_once_a_minute_per_channel_and_actor() -> None:
    log = _world_with_channel(None)
    log.commit(ActorWebhookSet("a1", "https://hooks.example.com/a1", "as", 0))
    mentions = [["a1", "one"], ["a2", "two"]]  # a2 has no webhook
    (first,) = _decide(log, 10 * SECOND, mentions)
    assert first.event == "mention"
    assert first.actor_id == "a1"
    assert first.secret == "as"
    assert json.loads(first.body) == {"message": MESSAGE, "mentioned_actor_id": "a1"}
    log.commit(first)
    assert _decide(log, 10 * SECOND + MENTION_INTERVAL_US - 1, mentions) == []
    (again,) = _decide(log, 10 * SECOND + MENTION_INTERVAL_US, mentions)
    assert again.actor_id == "a1"


def test_replay_and_snapshot_rebuild_the_outbox_exactly() -> None:
    log = _world_with_channel()
    log.commit(ActorWebhookSet("a1", "https://hooks.example.com/a1", None, 0))
    queued = [*_decide(log, 0, [["a1", "one"]]), *_decide(log, 1)]
    for event in queued:
        log.commit(event)
    outbox = log.world.outbox
    log.commit(outbox.decide_attempt(outbox.pending[queued[0].delivery_id], 2, "x", SCHEDULE))
    log.commit(outbox.decide_attempt(outbox.pending[queued[1].delivery_id], 3, None, SCHEDULE))

    def seen(world: World) -> Any:
        box = world.outbox
        return (box.pending, box.mention_pushes, box.delivered, box.given_up, world.webhooks.hooks)

    assert seen(log.replayed()) == seen(log.world)
    restored, _ = load_snapshot_payload(pack_snapshot(0, pack_registry(log.world), []))
    assert seen(restored) == seen(log.world)
    assert len(restored.outbox.pending) == 2


def test_member_added_is_one_queue_call() -> None:
    config = _world_with_channel().world.channels["c1"].config
    queued = decide_member_added(config, "bck_new", "bck_k", 7)
    assert queued is not None
    assert queued.event == "member_added"
    assert json.loads(queued.body) == {
        "channel_id": "c1",
        "member_key_id": "bck_new",
        "approved_by": "bck_k",
    }
    config.webhook_url = None
    assert decide_member_added(config, "bck_new", "bck_k", 7) is None


def test_forbidden_targets() -> None:
    for address in ("127.0.0.1", "10.0.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "::1"):
        assert forbidden_address(address), address
    assert forbidden_address("::ffff:127.0.0.1")
    assert not forbidden_address("93.184.216.34")
    assert not forbidden_address("example.com")  # a name: checked when resolved
    assert literal_target_refused("http://LOCALHOST:80/x")
    assert literal_target_refused("http://[fe80::1]/")
    assert not literal_target_refused("https://example.com/hook")
