"""Events of the delivery semantics: delayed visibility, dead letters, redrive.

Same rules as :mod:`backchannel.core.events` (which registers these): each
carries everything ``apply`` needs, no clock, no randomness.

Two of them span two channels. :class:`MessageDeadLettered` and
:class:`MessageRedriven` are journaled once, by the actor of the channel the
message leaves (``channel_id``); the record also carries the copy that
arrives in ``target_channel_id``, as the wire form of a ``MessagePosted``
(``arrival``). One record is atomic on disk (length + CRC framing: a torn
record is dropped whole), so after a crash the move either happened in both
channels or in neither; replay applies each half only to a channel whose
snapshot does not already cover the record's seq, so it never duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class MessagesVisible:
    """Delayed messages whose ``visible_at`` came: they take the next seqs, in order."""

    kind: ClassVar[str] = "msg.visible"
    channel_id: str
    message_ids: list[str]
    at: int


@dataclass(frozen=True, slots=True)
class MessageDeadLettered:
    """A claim ended unacknowledged (``reason`` ``lease_expired`` or ``released``)
    with ``deliveries >= max_deliveries``: the message leaves for history and
    ``arrival`` (a ``MessagePosted`` wire list) lands in ``target_channel_id``."""

    kind: ClassVar[str] = "msg.dead_lettered"
    channel_id: str
    message_id: str
    reason: str
    target_channel_id: str
    arrival: list[Any]
    at: int


@dataclass(frozen=True, slots=True)
class MessageRedriven:
    """A dead-lettered message goes back (``arrival`` lands in ``target_channel_id``)."""

    kind: ClassVar[str] = "msg.redriven"
    channel_id: str
    message_id: str
    target_channel_id: str
    arrival: list[Any]
    at: int


@dataclass(frozen=True, slots=True)
class ClaimReturned:
    """A claim handed to a parked claimer whose client had gone: undone, uncounted."""

    kind: ClassVar[str] = "claim.returned"
    channel_id: str
    message_id: str
    at: int


MOVE_EVENTS: tuple[type[Any], ...] = (MessageDeadLettered, MessageRedriven)
DELIVERY_EVENTS: tuple[type[Any], ...] = (
    MessagesVisible,
    MessageDeadLettered,
    MessageRedriven,
    ClaimReturned,
)
DeliveryEvent = MessagesVisible | MessageDeadLettered | MessageRedriven | ClaimReturned
