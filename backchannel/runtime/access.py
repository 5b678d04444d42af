"""Channel access commands: PATCH, aliases, members, invitations, access requests.

Each function is a command run inside a channel's actor loop with
``actor.call(fn, actor, ...)``: it decides with :mod:`backchannel.core.membership`,
journals and applies the event through :meth:`ChannelActor.commit_access`
in the same synchronous step (so the check and the change are atomic, also
for the global alias namespace), and returns ``(value, seq)``; the caller
answers once ``seq`` is durable. A refused command changes nothing.
"""

from __future__ import annotations

from typing import Any

from backchannel.core import membership
from backchannel.core.outbox import decide_member_added
from backchannel.core.records import AccessRequest, ChannelConfig, Invitation, KeyRecord, Member
from backchannel.runtime.actor import ChannelActor


def _now(actor: ChannelActor) -> int:
    return actor.hub.clock.now()


def update(
    actor: ChannelActor, key: KeyRecord, changes: dict[str, Any], related: list[str] | None
) -> tuple[ChannelConfig, int]:
    """PATCH validated ``changes``; ``related`` identifiers replace the links when given."""
    if related is not None:
        links = actor.hub.world.resolve_links(related, key, actor.channel_id)
        changes = {**changes, "related_channels": links}
    event = membership.decide_update(actor.state, key, changes, _now(actor))
    seq = actor.commit_access(event) if event is not None else 0
    return actor.state.config, seq


def add_alias(actor: ChannelActor, key: KeyRecord, alias: str) -> tuple[ChannelConfig, int]:
    taken = alias in actor.hub.world.channel_aliases
    event = membership.decide_alias(actor.state, key, alias, taken, _now(actor))
    return actor.state.config, actor.commit_access(event)


def add_member(actor: ChannelActor, key: KeyRecord, member_key_id: str) -> tuple[Member, int]:
    event = membership.decide_add_member(actor.state, key, member_key_id, _now(actor))
    seq = actor.commit_access(event)
    return actor.state.config.members[member_key_id], seq


def remove_member(actor: ChannelActor, key: KeyRecord, member_key_id: str) -> tuple[None, int]:
    event = membership.decide_remove_member(actor.state, key, member_key_id, _now(actor))
    return None, actor.commit_access(event)


def invite(actor: ChannelActor, key: KeyRecord) -> tuple[Invitation, int]:
    event = membership.decide_invite(actor.state, key, _now(actor))
    seq = actor.commit_access(event)
    return actor.state.ledger.invitations[event.invitation_id], seq


def resolve_invitation(
    actor: ChannelActor, key: KeyRecord, invitation_id: str
) -> tuple[Invitation, int]:
    event = membership.decide_resolve(actor.state, invitation_id, key, _now(actor))
    seq = actor.commit_access(event)
    return actor.state.ledger.invitations[invitation_id], seq


def revoke_invitation(
    actor: ChannelActor, key: KeyRecord, invitation_id: str
) -> tuple[Invitation, int]:
    event = membership.decide_revoke_invitation(actor.state, invitation_id, key, _now(actor))
    seq = actor.commit_access(event) if event is not None else 0
    return actor.state.ledger.invitations[invitation_id], seq


def request_access(
    actor: ChannelActor, key: KeyRecord, reason: str | None
) -> tuple[tuple[str, str | None], int]:
    status, request_id, event = membership.decide_request_access(
        actor.state, key, reason, _now(actor)
    )
    seq = actor.commit_access(event) if event is not None else 0
    return (status, request_id), seq


def decide_request(
    actor: ChannelActor, key: KeyRecord, request_id: str, approve: bool
) -> tuple[AccessRequest, int]:
    now = _now(actor)
    event = membership.decide_access_request(actor.state, key, request_id, approve, now)
    seq = actor.commit_access(event)
    request = actor.state.ledger.requests[request_id]
    if approve:  # the channel webhook's member_added, in the same group commit (§0.6)
        delivery = decide_member_added(
            actor.state.config, request.requester_key_id, key.key_id, now
        )
        if delivery is not None:
            seq = actor.hub.queue_webhooks([delivery]) or seq
    return request, seq
