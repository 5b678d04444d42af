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

from backchannel.core.delivery_events import DELIVERY_EVENTS, DeliveryEvent

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
    visible_at: int | None = None  # delayed: hidden until then (core.delivery_events)


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


# --- access and channel administration (contract §2.4, §2.5) ----------------


@dataclass(frozen=True, slots=True)
class ChannelDeleted:
    """Global: the channel and everything in it leave the world."""

    kind: ClassVar[str] = "channel.deleted"
    channel_id: str
    key_id: str
    at: int


@dataclass(frozen=True, slots=True)
class ChannelUpdated:
    """PATCH: ``changes`` maps config field names to their new values."""

    kind: ClassVar[str] = "channel.updated"
    channel_id: str
    changes: dict[str, Any]
    at: int


@dataclass(frozen=True, slots=True)
class ChannelAliasAdded:
    kind: ClassVar[str] = "channel.aliased"
    channel_id: str
    alias: str
    at: int


@dataclass(frozen=True, slots=True)
class MemberAdded:
    """The owner adds ``key_id`` (kept if already a member); logs ``member_added``."""

    kind: ClassVar[str] = "member.added"
    channel_id: str
    key_id: str
    member_id: str
    by_key_id: str
    log_id: str
    at: int


@dataclass(frozen=True, slots=True)
class MemberRemoved:
    kind: ClassVar[str] = "member.removed"
    channel_id: str
    key_id: str
    by_key_id: str
    log_id: str
    at: int


@dataclass(frozen=True, slots=True)
class InvitationCreated:
    kind: ClassVar[str] = "invitation.created"
    channel_id: str
    invitation_id: str
    owner_id: str
    key_id: str
    at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class InvitationResolved:
    """``key_id`` resolved the invitation: a member (kept if already one); logged."""

    kind: ClassVar[str] = "invitation.resolved"
    channel_id: str
    invitation_id: str
    key_id: str
    member_id: str
    log_id: str
    at: int


@dataclass(frozen=True, slots=True)
class InvitationRevoked:
    kind: ClassVar[str] = "invitation.revoked"
    channel_id: str
    invitation_id: str
    key_id: str
    log_id: str
    at: int


@dataclass(frozen=True, slots=True)
class AccessRequested:
    kind: ClassVar[str] = "access.requested"
    channel_id: str
    request_id: str
    key_id: str
    reason: str | None
    at: int


@dataclass(frozen=True, slots=True)
class AccessRequestDecided:
    """``status`` is ``approved`` (the requester becomes a member) or ``denied``."""

    kind: ClassVar[str] = "access.decided"
    channel_id: str
    request_id: str
    status: str
    key_id: str
    member_id: str
    log_id: str
    at: int


ACCESS_EVENTS: tuple[type[Any], ...] = (
    ChannelUpdated,
    ChannelAliasAdded,
    MemberAdded,
    MemberRemoved,
    InvitationCreated,
    InvitationResolved,
    InvitationRevoked,
    AccessRequested,
    AccessRequestDecided,
)
AccessEvent = (
    ChannelUpdated
    | ChannelAliasAdded
    | MemberAdded
    | MemberRemoved
    | InvitationCreated
    | InvitationResolved
    | InvitationRevoked
    | AccessRequested
    | AccessRequestDecided
)


# --- keys, actors, sessions, audit, operator (issue 9): global events ---------


@dataclass(frozen=True, slots=True)
class ScopesSet:
    kind: ClassVar[str] = "key.scopes"
    key_id: str
    scopes: list[str]
    at: int


@dataclass(frozen=True, slots=True)
class MintingToggled:
    """The operator opened or closed public minting (outlives the settings)."""

    kind: ClassVar[str] = "minting.toggled"
    enabled: bool
    at: int


@dataclass(frozen=True, slots=True)
class ActorAliased:
    kind: ClassVar[str] = "actor.aliased"
    actor_id: str
    alias: str
    at: int


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
class SessionCreated:
    kind: ClassVar[str] = "session.created"
    session_id: str
    key_id: str
    name: str
    state: dict[str, Any]
    at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """The session's whole state after a merge (the merge is decided, not replayed)."""

    kind: ClassVar[str] = "session.updated"
    session_id: str
    state: dict[str, Any]
    at: int


@dataclass(frozen=True, slots=True)
class SessionDeleted:
    kind: ClassVar[str] = "session.deleted"
    session_id: str
    at: int


@dataclass(frozen=True, slots=True)
class SessionsPurged:
    """Sessions that expired at or before ``before`` are dropped (cleanup)."""

    kind: ClassVar[str] = "session.purged"
    before: int


@dataclass(frozen=True, slots=True)
class SecurityRecorded:
    """One row of the security audit (contract §2.11), journaled with its cause."""

    kind: ClassVar[str] = "security.recorded"
    event_id: str
    event_type: str
    actor_key_id: str | None
    subject_key_id: str | None
    remote_addr: str | None
    detail: dict[str, Any]
    at: int


# --- access and multi-party (issue 9): channel events ------------------------


@dataclass(frozen=True, slots=True)
class ChannelPaused:
    """The operator's kill switch (contract §2.10): ``paused`` true or false."""

    kind: ClassVar[str] = "channel.paused"
    channel_id: str
    paused: bool
    at: int


OperatorEvent = (
    ScopesSet
    | MintingToggled
    | ActorAliased
    | ActorWebhookSet
    | ActorWebhookDeleted
    | SessionCreated
    | SessionUpdated
    | SessionDeleted
    | SecurityRecorded
    | SessionsPurged
)

GlobalEvent = (
    KeyMinted
    | KeyRevoked
    | ActorCreated
    | ChannelCreated
    | IdempotencyStored
    | IdempotencyPurged
    | ChannelDeleted
    | OperatorEvent
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
    | AccessEvent
    | ChannelPaused
    | DeliveryEvent
)
Event = GlobalEvent | ChannelEvent

_ALL_EVENTS: tuple[type[Any], ...] = (
    KeyMinted,
    KeyRevoked,
    ActorCreated,
    ChannelCreated,
    IdempotencyStored,
    IdempotencyPurged,
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
    ChannelDeleted,
    *ACCESS_EVENTS,
    ScopesSet,
    MintingToggled,
    ActorAliased,
    ActorWebhookSet,
    ActorWebhookDeleted,
    SessionCreated,
    SessionUpdated,
    SessionDeleted,
    SecurityRecorded,
    SessionsPurged,
    ChannelPaused,
    WebhookQueued,
    WebhookAttempted,
    *DELIVERY_EVENTS,
)
_KINDS: dict[str, type[Any]] = {cls.kind: cls for cls in _ALL_EVENTS}
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
    *ACCESS_EVENTS,
    ChannelPaused,
    *DELIVERY_EVENTS,
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
