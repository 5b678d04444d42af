"""JSON shapes of the contract's objects (§2.2). Pure functions of records."""

from __future__ import annotations

from typing import Any

from backchannel.core.records import (
    AccessRequest,
    Actor,
    ActorWebhook,
    Archived,
    ChannelConfig,
    Invitation,
    LogEntry,
    Member,
    Message,
    SecurityEvent,
    Session,
)
from backchannel.core.timefmt import format_ts
from backchannel.core.world import World

MESSAGE_CURSOR = "s"
HISTORY_CURSOR = "h"


def message_cursor(seq: int) -> str:
    """Opaque cursor meaning "after the message with this seq"."""
    return f"{MESSAGE_CURSOR}{seq}"


def history_cursor(seq: int) -> str:
    return f"{HISTORY_CURSOR}{seq}"


def _ref(actor_id: str | None, name: str | None) -> dict[str, Any] | None:
    return None if actor_id is None else {"id": actor_id, "name": name}


def message_view(message: Message, channel_id: str, now: int) -> dict[str, Any]:
    claimed_at = message.claimed_at
    return {
        "id": message.id,
        "channel_id": channel_id,
        "actor": _ref(message.actor_id, message.actor_name),
        "actor_label": message.actor_label,
        "content": message.content,
        "metadata": message.metadata,
        "created_at": format_ts(message.created_at),
        "expires_at": format_ts(message.expires_at),
        "claimed_by": _ref(message.claimed_by_id, message.claimed_by_name),
        "claimed_by_key_id": message.claimed_by_key_id,
        "mentions": [{"id": m[0], "name": m[1]} for m in message.mentions],
        "claimed_at": format_ts(claimed_at) if claimed_at is not None else None,
        "acknowledged_by": [
            {"id": a[0], "name": a[1], "occurred_at": format_ts(a[2])} for a in message.acks
        ],
        "active": message.expires_at > now and not message.removed,
        "deliveries": message.deliveries,
        "visible_at": format_ts(
            message.visible_at if message.visible_at is not None else message.created_at
        ),
    }


def archived_view(entry: Archived, channel_id: str) -> dict[str, Any]:
    message = entry.message
    claimed_at = message.claimed_at
    return {
        "id": message.id,
        "channel_id": channel_id,
        "actor": _ref(message.actor_id, message.actor_name),
        "actor_label": message.actor_label,
        "content": message.content,
        "metadata": message.metadata,
        "created_at": format_ts(message.created_at),
        "expires_at": format_ts(message.expires_at),
        "claimed_by": _ref(message.claimed_by_id, message.claimed_by_name),
        "claimed_at": format_ts(claimed_at) if claimed_at is not None else None,
        "archived_at": format_ts(entry.archived_at),
        "active": False,
        "reason": entry.reason,
        "deliveries": message.deliveries,
    }


def channel_view(config: ChannelConfig, world: World, viewer: str | None = None) -> dict[str, Any]:
    """The Channel object as ``viewer`` (a key id) may see it.

    ``related_channels`` lists only links to channels that still exist and
    that the viewer can read (contract §6 S6); None is the operator's view.
    """
    related = []
    for channel_id in config.related_channels:
        target = world.channels.get(channel_id)
        if target is not None and (viewer is None or target.config.can_access(viewer)):
            related.append(
                {"id": channel_id, "name": target.config.name, "mode": target.config.mode}
            )
    related.sort(key=lambda item: item["name"])
    return {
        "id": config.id,
        "owner_id": config.owner_id,
        "created_by_key_id": config.owner_key_id,
        "name": config.name,
        "mode": config.mode,
        "access": config.access,
        "discoverable": config.discoverable,
        "description": config.description,
        "metadata_schema": config.metadata_schema,
        "pinned_message": config.pinned_message,
        "ttl_seconds": config.ttl_seconds,
        "retention_days": config.retention_days,
        "max_messages": config.max_messages,
        "max_writes_per_minute": config.max_writes_per_minute,
        "paused": config.paused,
        "aliases": sorted(config.aliases),
        "related_channels": related,
        "max_deliveries": config.max_deliveries,
        "dead_letter_channel": config.dead_letter_channel,
        "created_at": format_ts(config.created_at),
        "updated_at": format_ts(config.updated_at),
    }


def discover_view(config: ChannelConfig, key_id: str) -> dict[str, Any]:
    return {
        "id": config.id,
        "name": config.name,
        "mode": config.mode,
        "access": config.access,
        "description": config.description,
        "created_at": format_ts(config.created_at),
        "is_member": key_id == config.owner_key_id or key_id in config.members,
    }


def actor_view(actor: Actor) -> dict[str, Any]:
    return {
        "id": actor.id,
        "owner_id": actor.owner_id,
        "created_by_key_id": actor.created_by_key_id,
        "name": actor.name,
        "description": actor.description,
        "metadata": actor.metadata,
        "aliases": sorted(actor.aliases),
        "created_at": format_ts(actor.created_at),
        "updated_at": format_ts(actor.updated_at),
    }


# -- access (§2.5) ------------------------------------------------------------

EVENT_CURSOR = "e"


def event_cursor(seq: int) -> str:
    """Opaque, lossless cursor meaning "after the channel event with this seq"."""
    return f"{EVENT_CURSOR}{seq}"


def member_view(member: Member, channel_id: str) -> dict[str, Any]:
    return {
        "id": member.id,
        "channel_id": channel_id,
        "key_id": member.key_id,
        "granted_at": format_ts(member.granted_at),
        "granted_via_invitation_id": member.granted_via_invitation_id,
    }


def invitation_view(invitation: Invitation, config: ChannelConfig, now: int) -> dict[str, Any]:
    revoked_at = invitation.revoked_at
    return {
        "id": invitation.id,
        "owner_id": invitation.owner_id,
        "created_by_key_id": invitation.created_by_key_id,
        "created_at": format_ts(invitation.created_at),
        "expires_at": format_ts(invitation.expires_at),
        "revoked_at": format_ts(revoked_at) if revoked_at is not None else None,
        "active": revoked_at is None and invitation.expires_at > now,
        "channel": {
            "id": config.id,
            "name": config.name,
            "mode": config.mode,
            "description": config.description,
        },
    }


def log_entry_view(entry: LogEntry, channel_id: str) -> dict[str, Any]:
    return {
        "id": entry.id,
        "channel_id": channel_id,
        "event_type": entry.event_type,
        "actor_key_id": entry.actor_key_id,
        "subject_key_id": entry.subject_key_id,
        "invitation_id": entry.invitation_id,
        "metadata": {},
        "created_at": format_ts(entry.created_at),
        "expires_at": format_ts(entry.expires_at),
    }


def access_request_view(request: AccessRequest, channel_id: str) -> dict[str, Any]:
    return {
        "id": request.id,
        "channel_id": channel_id,
        "requester_key_id": request.requester_key_id,
        "reason": request.reason,
        "status": request.status,
        "created_at": format_ts(request.created_at),
    }


def session_view(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "name": session.name,
        "state": session.state,
        "created_at": format_ts(session.created_at),
        "updated_at": format_ts(session.updated_at),
        "expires_at": format_ts(session.expires_at),
    }


def webhook_view(hook: ActorWebhook) -> dict[str, Any]:
    """An actor webhook as GET shows it: the secret only as ``has_secret``."""
    return {
        "actor_id": hook.actor_id,
        "url": hook.url,
        "has_secret": hook.secret is not None,
        "updated_at": format_ts(hook.updated_at),
    }


def security_event_view(event: SecurityEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_at": format_ts(event.occurred_at),
        "actor_key_id": event.actor_key_id,
        "subject_key_id": event.subject_key_id,
        "event_type": event.event_type,
        "remote_addr": event.remote_addr,
        "detail": event.detail,
    }
