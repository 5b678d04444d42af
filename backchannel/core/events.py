"""Events: every accepted change, as a record that ``apply`` replays.

Rule 1: live traffic and recovery both change state only by applying these
events, so replay cannot drift from live behaviour.

Rule 2: an event carries everything needed to re-apply it (ids, times,
names, key ids); applying it needs no clock and no randomness.

Each event class has a short ``kind`` tag. :func:`to_wire` turns an event
into a msgpack-friendly list ``[kind, field, ...]`` and :func:`from_wire`
reverses it; the storage layer only ever sees those lists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

# --- global (registry) events ---------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyMinted:
    kind: ClassVar[str] = "key.minted"
    key_id: str
    key_hash: str
    owner_id: str
    label: str
    at: int
    actor_id: str  # the default actor named after the label


@dataclass(frozen=True, slots=True)
class KeyRevoked:
    kind: ClassVar[str] = "key.revoked"
    key_id: str
    at: int


@dataclass(frozen=True, slots=True)
class ActorCreated:
    kind: ClassVar[str] = "actor.created"
    actor_id: str
    owner_id: str
    key_id: str
    name: str
    description: str
    metadata: dict[str, Any]
    at: int


@dataclass(frozen=True, slots=True)
class ChannelCreated:
    kind: ClassVar[str] = "channel.created"
    channel_id: str
    config: dict[str, Any]  # ChannelConfig fields except members/aliases
    aliases: list[str]
    at: int


@dataclass(frozen=True, slots=True)
class IdempotencyStored:
    kind: ClassVar[str] = "idem.stored"
    key_id: str
    idempotency_key: str
    method: str
    path: str
    status: int
    body: bytes
    at: int


@dataclass(frozen=True, slots=True)
class IdempotencyPurged:
    kind: ClassVar[str] = "idem.purged"
    before: int


@dataclass(frozen=True, slots=True)
class ActorWebhookSet:
    kind: ClassVar[str] = "actor.webhook.set"
    actor_id: str
    url: str
    secret: str | None
    at: int


@dataclass(frozen=True, slots=True)
class ActorWebhookDeleted:
    kind: ClassVar[str] = "actor.webhook.deleted"
    actor_id: str
    at: int


@dataclass(frozen=True, slots=True)
class WebhookQueued:
    """A delivery owed to a receiver, journaled with the change that caused it.

    ``body`` is the exact JSON that is signed and sent; ``channel_id`` and
    ``actor_id`` say what caused it (a mention names its actor).
    """

    kind: ClassVar[str] = "webhook.queued"
    delivery_id: str
    event: str
    url: str
    secret: str | None
    body: bytes
    at: int
    channel_id: str | None
    actor_id: str | None


@dataclass(frozen=True, slots=True)
class WebhookAttempted:
    """One delivery attempt: ``outcome`` is delivered, failed (retry at ``next_attempt_at``)
    or given_up."""

    kind: ClassVar[str] = "webhook.attempted"
    delivery_id: str
    at: int
    outcome: str
    next_attempt_at: int | None
    error: str


# --- channel events --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessagePosted:
    kind: ClassVar[str] = "msg.posted"
    channel_id: str
    message_id: str
    content: str
    metadata: dict[str, Any]
    created_at: int
    expires_at: int
    author_key_id: str
    actor_id: str | None
    actor_name: str | None
    actor_label: str | None
    mentions: list[list[str]]


@dataclass(frozen=True, slots=True)
class MessageClaimed:
    kind: ClassVar[str] = "msg.claimed"
    channel_id: str
    message_id: str
    actor_id: str
    actor_name: str
    key_id: str
    at: int
    lease_token: str | None
    lease_expires_at: int | None


@dataclass(frozen=True, slots=True)
class LeaseExtended:
    kind: ClassVar[str] = "lease.extended"
    channel_id: str
    message_id: str
    lease_token: str
    lease_expires_at: int


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    kind: ClassVar[str] = "lease.expired"
    channel_id: str
    message_id: str
    lease_token: str
    at: int


@dataclass(frozen=True, slots=True)
class MessageReleased:
    kind: ClassVar[str] = "msg.released"
    channel_id: str
    message_id: str
    at: int


@dataclass(frozen=True, slots=True)
class MessageAcked:
    kind: ClassVar[str] = "msg.acked"
    channel_id: str
    message_id: str
    actor_id: str
    actor_name: str
    at: int
    ends_lease: bool


@dataclass(frozen=True, slots=True)
class LeaseEnded:
    """The holder acknowledged again: the claim stands, its lease stops."""

    kind: ClassVar[str] = "lease.ended"
    channel_id: str
    message_id: str
    at: int


@dataclass(frozen=True, slots=True)
class MessageRetracted:
    kind: ClassVar[str] = "msg.retracted"
    channel_id: str
    message_id: str
    at: int


@dataclass(frozen=True, slots=True)
class MessagesExpired:
    """Every live message with ``seq <= through_seq`` moves to history."""

    kind: ClassVar[str] = "msg.expired"
    channel_id: str
    through_seq: int
    at: int


@dataclass(frozen=True, slots=True)
class HistoryPurged:
    """Archived messages with ``archived_at < before`` are dropped."""

    kind: ClassVar[str] = "history.purged"
    channel_id: str
    before: int


GlobalEvent = (
    KeyMinted
    | KeyRevoked
    | ActorCreated
    | ChannelCreated
    | IdempotencyStored
    | IdempotencyPurged
    | ActorWebhookSet
    | ActorWebhookDeleted
    | WebhookQueued
    | WebhookAttempted
)
ChannelEvent = (
    MessagePosted
    | MessageClaimed
    | LeaseExtended
    | LeaseExpired
    | MessageReleased
    | MessageAcked
    | LeaseEnded
    | MessageRetracted
    | MessagesExpired
    | HistoryPurged
)
Event = GlobalEvent | ChannelEvent

_KINDS: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        KeyMinted,
        KeyRevoked,
        ActorCreated,
        ChannelCreated,
        IdempotencyStored,
        IdempotencyPurged,
        ActorWebhookSet,
        ActorWebhookDeleted,
        WebhookQueued,
        WebhookAttempted,
        MessagePosted,
        MessageClaimed,
        LeaseExtended,
        LeaseExpired,
        MessageReleased,
        MessageAcked,
        LeaseEnded,
        MessageRetracted,
        MessagesExpired,
        HistoryPurged,
    )
}
CHANNEL_EVENTS: tuple[type[Any], ...] = (
    MessagePosted,
    MessageClaimed,
    LeaseExtended,
    LeaseExpired,
    MessageReleased,
    MessageAcked,
    LeaseEnded,
    MessageRetracted,
    MessagesExpired,
    HistoryPurged,
)


def channel_of(event: Event) -> str | None:
    """The channel a channel event belongs to; None for global events."""
    if isinstance(event, CHANNEL_EVENTS):
        channel_id: str = event.channel_id
        return channel_id
    return None


_FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _KINDS.values()
}


def to_wire(event: Event) -> list[Any]:
    """Encode an event as ``[kind, field, ...]`` in field order."""
    cls = type(event)
    return [cls.kind, *(getattr(event, name) for name in _FIELDS[cls])]


def from_wire(record: list[Any]) -> Event:
    """Decode :func:`to_wire` output. Raises ValueError on an unknown kind."""
    cls = _KINDS.get(record[0])
    if cls is None:
        raise ValueError(f"unknown event kind {record[0]!r}")
    event: Event = cls(*record[1:])
    return event
