"""Plain records the state machines own: keys, actors, channels, messages.

Records hold only msgpack-friendly values (str, int, bool, None, dict,
list) so a snapshot can store them field by field. Times are integer
microseconds since the epoch (see :mod:`backchannel.core.timefmt`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLAIMABLE = "claimable"
BROADCAST = "broadcast"
OPEN = "open"
RESTRICTED = "restricted"


@dataclass(slots=True)
class KeyRecord:
    key_id: str
    key_hash: str
    owner_id: str
    label: str
    created_at: int
    active: bool = True
    scopes: list[str] | None = None


@dataclass(slots=True)
class Actor:
    id: str
    owner_id: str
    created_by_key_id: str
    name: str
    description: str
    metadata: dict[str, Any]
    created_at: int
    updated_at: int
    aliases: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Member:
    id: str
    key_id: str
    granted_at: int
    granted_via_invitation_id: str | None = None


@dataclass(slots=True)
class ChannelConfig:
    """Everything about a channel except its messages."""

    id: str
    owner_id: str
    owner_key_id: str
    name: str
    mode: str
    access: str
    discoverable: bool
    description: str
    metadata_schema: dict[str, Any]
    pinned_message: str | None
    ttl_seconds: int
    retention_days: int
    max_messages: int | None
    max_writes_per_minute: int | None
    webhook_url: str | None
    webhook_secret: str | None
    created_at: int
    updated_at: int
    paused: bool = False
    aliases: list[str] = field(default_factory=list)
    related_channels: list[str] = field(default_factory=list)
    operator_paused: bool = False  # paused by the operator: only the operator resumes it
    max_deliveries: int | None = None  # with dead_letter_channel: both or neither
    dead_letter_channel: str | None = None  # channel id
    members: dict[str, Member] = field(default_factory=dict)

    def can_access(self, key_id: str) -> bool:
        """Open channels admit every key; restricted ones the owner and members."""
        return self.access == OPEN or key_id == self.owner_key_id or key_id in self.members


EMPTY_METADATA: dict[str, Any] = {}
"""The one metadata dict of every message posted without metadata.

Shared, so it must never be mutated: message metadata is replaced, never
changed in place (a dead-letter note builds a new dict)."""


@dataclass(slots=True)
class Claim:
    """Who holds a message and how; a message nobody holds has none.

    ``lease_token`` and ``lease_expires_at`` are None for a claim without a
    lease, and become None when the holder's ack ends its lease.
    """

    actor_id: str
    actor_name: str
    key_id: str
    at: int
    lease_token: str | None = None
    lease_expires_at: int | None = None


@dataclass(slots=True)
class Message:
    """A live message. ``seq`` is its position in the channel, from 1.

    A delayed message has ``seq`` 0 until it becomes visible at
    ``visible_at``; it then takes the next position (core.channel rule 1).
    ``deliveries`` counts the claims of it that began.

    Compact by design (issue 15: millions of these live in memory): the
    claim is one optional :class:`Claim` (None while unheld), and
    ``mentions``, ``acks`` and empty ``metadata`` share immutable empties.
    ``mentions`` and ``acks`` are tuples, replaced rather than changed, so
    a row read from a message (:func:`message_row`) never changes later.
    The ``claimed_by_*``/``lease_*`` properties read the claim.
    """

    id: str
    seq: int
    content: str
    metadata: dict[str, Any]
    created_at: int
    expires_at: int
    author_key_id: str
    actor_id: str | None = None
    actor_name: str | None = None
    actor_label: str | None = None
    mentions: tuple[list[str], ...] = ()
    claim: Claim | None = None
    acks: tuple[list[Any], ...] = ()  # [actor_id, name, at]
    deliveries: int = 0
    visible_at: int | None = None  # None: visible since created_at
    removed: bool = False

    @property
    def claimed_by_id(self) -> str | None:
        claim = self.claim
        return None if claim is None else claim.actor_id

    @property
    def claimed_by_name(self) -> str | None:
        claim = self.claim
        return None if claim is None else claim.actor_name

    @property
    def claimed_by_key_id(self) -> str | None:
        claim = self.claim
        return None if claim is None else claim.key_id

    @property
    def claimed_at(self) -> int | None:
        claim = self.claim
        return None if claim is None else claim.at

    @property
    def lease_token(self) -> str | None:
        claim = self.claim
        return None if claim is None else claim.lease_token

    @property
    def lease_expires_at(self) -> int | None:
        claim = self.claim
        return None if claim is None else claim.lease_expires_at

    def acked_by(self, actor_id: str) -> bool:
        return any(ack[0] == actor_id for ack in self.acks)


MESSAGE_FIELDS = (
    "id",
    "seq",
    "content",
    "metadata",
    "created_at",
    "expires_at",
    "author_key_id",
    "actor_id",
    "actor_name",
    "actor_label",
    "mentions",
    "claimed_by_id",
    "claimed_by_name",
    "claimed_by_key_id",
    "claimed_at",
    "lease_token",
    "lease_expires_at",
    "acks",
    "deliveries",
    "visible_at",
)
"""The order of a message row (snapshots since format 2; never reordered)."""

_UNCLAIMED = (None, None, None, None, None, None)


def message_row(m: Message) -> tuple[Any, ...]:
    """The message's values in ``MESSAGE_FIELDS`` order, detached from later changes.

    Every value is immutable or replaced rather than changed in place
    (``metadata``, ``mentions``, ``acks``), so no copy is needed.
    """
    c = m.claim
    if c is None and not m.acks and not m.deliveries and m.visible_at is None:
        # trailing defaults left out: smaller snapshots, faster loads (every
        # reader since format 2 fills them in)
        if not m.mentions:
            return (
                m.id,
                m.seq,
                m.content,
                m.metadata,
                m.created_at,
                m.expires_at,
                m.author_key_id,
                m.actor_id,
                m.actor_name,
                m.actor_label,
            )
    claim = (
        _UNCLAIMED
        if c is None
        else (c.actor_id, c.actor_name, c.key_id, c.at, c.lease_token, c.lease_expires_at)
    )
    return (
        m.id,
        m.seq,
        m.content,
        m.metadata,
        m.created_at,
        m.expires_at,
        m.author_key_id,
        m.actor_id,
        m.actor_name,
        m.actor_label,
        m.mentions,
        *claim,
        m.acks,
        m.deliveries,
        m.visible_at,
    )


_ROW_DEFAULTS = (None, None, None, (), None, None, None, None, None, None, (), 0, None)


def message_from_row(
    row: list[Any] | tuple[Any, ...], strings: dict[str, str] | None = None
) -> Message:
    """The message a :func:`message_row` row (as unpacked from msgpack) describes.

    Rows may be shorter than ``MESSAGE_FIELDS`` (written before later fields
    existed, or trimmed of trailing defaults); the missing fields take
    their defaults. Empty containers become the shared empties. With
    ``strings``, the author's key id and the actor's id and name are
    replaced by one shared copy per distinct value (a loader's table).
    """
    if len(row) < 20:
        row = (*row, *_ROW_DEFAULTS[len(row) - 7 :])
    (
        id_,
        seq,
        content,
        metadata,
        created_at,
        expires_at,
        author_key_id,
        actor_id,
        actor_name,
        actor_label,
        mentions,
        claimed_by_id,
        claimed_by_name,
        claimed_by_key_id,
        claimed_at,
        lease_token,
        lease_expires_at,
        acks,
        deliveries,
        visible_at,
    ) = row
    if strings is not None:
        author_key_id = strings.setdefault(author_key_id, author_key_id)
        if actor_id is not None:
            actor_id = strings.setdefault(actor_id, actor_id)
            actor_name = strings.setdefault(actor_name, actor_name)
    return Message(
        id_,
        seq,
        content,
        metadata or EMPTY_METADATA,
        created_at,
        expires_at,
        author_key_id,
        actor_id,
        actor_name,
        actor_label,
        tuple(mentions) if mentions else (),
        None
        if claimed_by_id is None
        else Claim(
            claimed_by_id,
            claimed_by_name,
            claimed_by_key_id,
            claimed_at,
            lease_token,
            lease_expires_at,
        ),
        tuple(acks) if acks else (),
        deliveries,
        visible_at,
    )


def load_message_rows(
    rows: list[Any], strings: dict[str, str], order: list[Message], live: dict[str, Message]
) -> None:
    """:func:`message_from_row` over many rows, appended to ``order`` and ``live``.

    A loader's hot loop (a restart reads millions of rows): rows holding
    only the first ten fields (nothing claimed, acked, delayed or
    mentioned) take one Python call each.
    """
    append = order.append
    share = strings.setdefault
    for row in rows:
        if len(row) != 10:
            message = message_from_row(row, strings)
            append(message)
            live[message.id] = message
            continue
        id_, seq, content, metadata, created_at, expires_at, key_id, actor_id, name, label = row
        if actor_id is not None:
            actor_id = share(actor_id, actor_id)
            name = share(name, name)
        append(
            message := Message(
                id_,
                seq,
                content,
                metadata or EMPTY_METADATA,
                created_at,
                expires_at,
                share(key_id, key_id),
                actor_id,
                name,
                label,
            )
        )
        live[id_] = message


@dataclass(slots=True)
class Archived:
    """A message in /history: expired (``reason='expired'``) or retracted."""

    message: Message
    archived_at: int
    reason: str


@dataclass(slots=True)
class IdempotencyEntry:
    method: str
    path: str
    status: int
    body: bytes
    stored_at: int


# --- access: invitations, access requests, the channel's event log (§2.5) ---


@dataclass(slots=True)
class Invitation:
    """A multi-use bearer invitation to one channel, alive for 24 h unless revoked."""

    id: str
    channel_id: str
    owner_id: str
    created_by_key_id: str
    created_at: int
    expires_at: int
    revoked_at: int | None = None


@dataclass(slots=True)
class AccessRequest:
    """A key's request to join a restricted channel: pending, approved or denied."""

    id: str
    requester_key_id: str
    reason: str | None
    status: str
    created_at: int
    resolved_at: int | None = None
    resolved_by_key_id: str | None = None


@dataclass(slots=True)
class LogEntry:
    """One channel event of ``GET .../events`` (24 h life). ``seq`` orders them."""

    id: str
    seq: int
    event_type: str
    actor_key_id: str
    subject_key_id: str | None
    invitation_id: str | None
    created_at: int
    expires_at: int


@dataclass(slots=True)
class Session:
    """A small per-key key/value document (contract §2.8); lives 24 h from creation."""

    id: str
    key_id: str
    name: str
    state: dict[str, Any]
    created_at: int
    updated_at: int
    expires_at: int


@dataclass(slots=True)
class ActorWebhook:
    """An actor's mention webhook registration (contract §2.7); one per actor."""

    actor_id: str
    url: str
    secret: str | None
    updated_at: int


@dataclass(slots=True)
class SecurityEvent:
    """One row of the security audit (contract §2.11)."""

    id: str
    event_type: str
    actor_key_id: str | None
    subject_key_id: str | None
    remote_addr: str | None
    detail: dict[str, Any]
    occurred_at: int
