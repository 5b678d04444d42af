"""Route docs of the multi-party half: channel changes, members, invitations,
access requests and the channel event log (contract §2.4, §2.5, §0.7)."""

from __future__ import annotations

from backchannel.config import Settings
from backchannel.http.route_docs.shapes import (
    CHANNEL_READ,
    DEAD_LETTER_FIELDS,
    OBJECT,
    STRING,
    TIMESTAMP,
    Doc,
    Fields,
    nullable,
    obj,
    page,
    query,
    ref,
)

OWNER = (*CHANNEL_READ, "forbidden")

MEMBER = obj(
    {
        "id": STRING,
        "channel_id": STRING,
        "key_id": STRING,
        "granted_at": TIMESTAMP,
        "granted_via_invitation_id": nullable(STRING),
    }
)
INVITATION = obj(
    {
        "id": STRING,
        "owner_id": STRING,
        "created_by_key_id": STRING,
        "created_at": TIMESTAMP,
        "expires_at": TIMESTAMP,
        "revoked_at": nullable(TIMESTAMP),
        "active": {"type": "boolean"},
        "channel": obj({"id": STRING, "name": STRING, "mode": STRING, "description": STRING}),
    }
)
CHANNEL_EVENT = obj(
    {
        "id": STRING,
        "channel_id": STRING,
        "event_type": {
            "enum": ["member_added", "member_removed", "invitation_resolved", "invitation_revoked"]
        },
        "actor_key_id": nullable(STRING),
        "subject_key_id": nullable(STRING),
        "invitation_id": nullable(STRING),
        "metadata": OBJECT,
        "created_at": TIMESTAMP,
        "expires_at": TIMESTAMP,
    }
)
ACCESS_REQUEST = obj(
    {
        "id": STRING,
        "channel_id": STRING,
        "requester_key_id": STRING,
        "reason": STRING,
        "status": STRING,
        "created_at": TIMESTAMP,
    }
)
DECISION = obj({"status": STRING, "request_id": STRING, "requester_key_id": STRING})


def docs(settings: Settings) -> dict[tuple[str, str], Doc]:
    """Channel changes, members, invitations, access requests, events."""
    f = Fields(settings)
    patch = obj(
        {},
        {
            "name": f.name,
            "mode": {"enum": ["broadcast", "claimable"]},
            "access": {"enum": ["open", "restricted"]},
            "discoverable": {"type": "boolean"},
            "description": f.text,
            "metadata_schema": OBJECT,
            "pinned_message": nullable(f.text),
            "related_channels": {"type": "array", "items": STRING},
            "retention_days": {"type": "integer", "minimum": 1, "maximum": 365},
            "max_messages": nullable({"type": "integer", "minimum": 1, "maximum": 1_000_000}),
            "max_writes_per_minute": nullable(
                {"type": "integer", "minimum": 1, "maximum": 1_000_000}
            ),
            "paused": {"type": "boolean"},
            **DEAD_LETTER_FIELDS,
        },
    )
    channel = "/v1/channels/<identifier>"
    return {
        ("PATCH", channel): Doc(
            "updateChannel",
            "Change a channel's settings (owner only; unknown fields are refused).",
            "channels",
            answer=ref("Channel"),
            body=patch,
            errors=(
                *OWNER,
                "invalid_fields",
                "invalid_string",
                "invalid_object",
                "invalid_mode",
                "invalid_access",
                "invalid_discoverable",
                "invalid_channel_name",
                "invalid_retention_days",
                "invalid_max_messages",
                "invalid_max_writes_per_minute",
                "invalid_related_channels",
                "invalid_paused",
                "invalid_dead_letter",
            ),
        ),
        ("DELETE", channel): Doc(
            "deleteChannel",
            "Delete a channel with its messages, claims and aliases (owner only).",
            "channels",
            204,
            errors=OWNER,
        ),
        ("POST", f"{channel}/aliases"): Doc(
            "addChannelAlias",
            "Give a channel a global alias (owner only).",
            "channels",
            201,
            ref("Channel"),
            obj({"alias": f.name}),
            True,
            (*OWNER, "missing_field", "invalid_string", "alias_conflict"),
        ),
        ("GET", f"{channel}/members"): Doc(
            "listMembers",
            "The members of a channel (owner only).",
            "membership",
            answer=obj({"data": {"type": "array", "items": MEMBER}}),
            errors=OWNER,
        ),
        ("POST", f"{channel}/members"): Doc(
            "addMember",
            "Add a key as a member (owner only).",
            "membership",
            201,
            MEMBER,
            obj({"key_id": STRING}),
            True,
            (*OWNER, "missing_field", "invalid_string"),
        ),
        ("DELETE", f"{channel}/members/<member_key_id>"): Doc(
            "removeMember",
            "Remove a member; it loses access at once (owner only).",
            "membership",
            answer=obj({"status": {"const": "removed"}}),
            errors=(*OWNER, "cannot_remove_owner"),
        ),
        ("GET", f"{channel}/events"): Doc(
            "listChannelEvents",
            "Membership and invitation events of the last 24 h (owner only).",
            "membership",
            answer=page(CHANNEL_EVENT),
            query=[query("since", STRING, "`next_cursor` of the previous page"), f.limit],
            errors=(*OWNER, "invalid_query", "invalid_limit"),
        ),
        ("POST", f"{channel}/invitations"): Doc(
            "createInvitation",
            "Create a 24 h invitation to a channel (owner only).",
            "membership",
            201,
            INVITATION,
            OBJECT,
            errors=OWNER,
        ),
        ("GET", "/v1/channel-invitations/<invitation_id>"): Doc(
            "resolveInvitation",
            "Resolve an invitation with your key: you become a member.",
            "membership",
            answer=INVITATION,
            errors=(
                "api_key_required",
                "unauthorized",
                "invitation_not_found",
                "invitation_expired",
                "invitation_revoked",
                "rate_limit_exceeded",
            ),
        ),
        ("DELETE", "/v1/channel-invitations/<invitation_id>"): Doc(
            "revokeInvitation",
            "Revoke an invitation (the channel owner).",
            "membership",
            answer=INVITATION,
            errors=("invitation_not_found", "forbidden", "channel_access_denied"),
        ),
        ("POST", f"{channel}/access-requests"): Doc(
            "requestAccess",
            "Ask the owner of a restricted channel for access (202 pending).",
            "membership",
            202,
            obj({"status": STRING}, {"request_id": STRING, "note": STRING}),
            obj({}, {"reason": f.text}),
            errors=("channel_not_found", "invalid_string"),
            also=(200,),
        ),
        ("GET", f"{channel}/access-requests"): Doc(
            "listAccessRequests",
            "Pending access requests (owner only).",
            "membership",
            answer=obj({"data": {"type": "array", "items": ACCESS_REQUEST}}),
            errors=("channel_not_found", "forbidden"),
        ),
        ("POST", f"{channel}/access-requests/<request_id>/approve"): Doc(
            "approveAccessRequest",
            "Approve a pending request: the requester becomes a member (owner only).",
            "membership",
            answer=DECISION,
            errors=(
                "channel_not_found",
                "forbidden",
                "access_request_not_found",
                "access_request_resolved",
            ),
        ),
        ("POST", f"{channel}/access-requests/<request_id>/deny"): Doc(
            "denyAccessRequest",
            "Deny a pending request (owner only).",
            "membership",
            answer=DECISION,
            errors=(
                "channel_not_found",
                "forbidden",
                "access_request_not_found",
                "access_request_resolved",
            ),
        ),
    }
