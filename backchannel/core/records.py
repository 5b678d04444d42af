"""Plain records the state machines own: keys, actors, channels, messages.

Records hold only msgpack-friendly values (str, int, bool, None, dict,
list, tuple) so a snapshot can store them field by field. Times are integer
microseconds since the epoch (see :mod:`backchannel.core.timefmt`).
Messages, the one record that exists by the million, live in
:mod:`backchannel.core.message` and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backchannel.core.message import EMPTY_METADATA as EMPTY_METADATA
from backchannel.core.message import MESSAGE_FIELDS as MESSAGE_FIELDS
from backchannel.core.message import Claim as Claim
from backchannel.core.message import Message as Message
from backchannel.core.message import load_message_rows as load_message_rows
from backchannel.core.message import message_from_row as message_from_row
from backchannel.core.message import message_row as message_row

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
