"""Delivery semantics, decided: dead letters when a claim ends, and redrive.

Pure like :mod:`backchannel.core.channel`: functions read states and
``now`` and return events (see :mod:`backchannel.core.delivery_events`);
they change nothing. The runtime picks the target channel (it owns the
directory) and journals the one record a move takes.

Rules
-----
1. ``deliveries`` counts claims that began (``MessageClaimed`` of an
   unheld message); a claim handed to a client that had gone is returned
   uncounted (``ClaimReturned``).
2. A claim that ends without the holder's ack (its lease lapsed, or it was
   released) with ``deliveries >= max_deliveries`` moves the message to the
   channel's ``dead_letter_channel``; when that channel no longer exists the
   claim simply ends and the message stays.
3. A move is one event: the message leaves its channel for history
   (``dead_lettered`` / ``redriven``) and a copy with a new id arrives in
   the target, visible at once, with ``deliveries`` 0.
"""

from __future__ import annotations

import uuid
from typing import Any

from backchannel.core.channel import ChannelState
from backchannel.core.delivery_events import MessageDeadLettered, MessageRedriven
from backchannel.core.events import MessagePosted, to_wire
from backchannel.core.records import Message
from backchannel.core.timefmt import US_PER_SECOND

DEAD_LETTER = "dead_letter"
LEASE_EXPIRED = "lease_expired"
RELEASED = "released"


def dead_letter_due(state: ChannelState, message: Message) -> bool:
    """Whether ending ``message``'s current claim unacknowledged dead-letters it."""
    config = state.config
    limit = config.max_deliveries
    if limit is None or config.dead_letter_channel is None or message.deliveries < limit:
        return False
    holder = message.claimed_by_id
    return holder is not None and not message.acked_by(holder)


def decide_dead_letter(
    state: ChannelState, message: Message, reason: str, target: ChannelState, now: int
) -> MessageDeadLettered:
    """Move ``message`` to ``target`` with ``metadata.dead_letter`` added (rule 3)."""
    cid = state.config.id
    note = {
        "source_channel_id": cid,
        "source_message_id": message.id,
        "deliveries": message.deliveries,
        "reason": reason,
    }
    arrival = _arrival(target, message, {**message.metadata, DEAD_LETTER: note}, now)
    return MessageDeadLettered(cid, message.id, reason, target.config.id, to_wire(arrival), now)


def redrivable(state: ChannelState, limit: int) -> list[tuple[Message, str]]:
    """Up to ``limit`` unheld dead-lettered messages, oldest first, with their source id."""
    out: list[tuple[Message, str]] = []
    for message in state.page(0, state.last_seq + 1, "unclaimed"):
        note = message.metadata.get(DEAD_LETTER)
        if isinstance(note, dict) and isinstance(note.get("source_channel_id"), str):
            out.append((message, note["source_channel_id"]))
            if len(out) >= limit:
                break
    return out


def decide_redrive(
    state: ChannelState, message: Message, target: ChannelState, now: int
) -> MessageRedriven:
    """Move a dead-lettered ``message`` back to ``target``, without its note."""
    metadata = {k: v for k, v in message.metadata.items() if k != DEAD_LETTER}
    arrival = _arrival(target, message, metadata, now)
    return MessageRedriven(state.config.id, message.id, target.config.id, to_wire(arrival), now)


def _arrival(
    target: ChannelState, message: Message, metadata: dict[str, Any], now: int
) -> MessagePosted:
    return MessagePosted(
        channel_id=target.config.id,
        message_id=str(uuid.uuid4()),
        content=message.content,
        metadata=metadata,
        created_at=now,
        expires_at=now + target.config.ttl_seconds * US_PER_SECOND,
        author_key_id=message.author_key_id,
        actor_id=message.actor_id,
        actor_name=message.actor_name,
        actor_label=message.actor_label,
        mentions=[],
    )
