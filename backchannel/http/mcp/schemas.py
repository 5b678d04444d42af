"""The exact input schema and description of every MCP tool.

The published ``backchannel-mcp`` tools keep their names and argument
shapes (existing prompts name them); every schema here is closed
(``additionalProperties: false``), so an argument the tool would ignore is
refused instead. Arguments added to a published tool are optional.
Bounds that are settings (lease range) come from the running server.
"""

from __future__ import annotations

from typing import Any

from backchannel.config import Settings

_STRING = {"type": "string", "minLength": 1}
_IDEMPOTENCY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "description": (
        "Optional. Retry with the same value to get the first answer again "
        "instead of a second effect (the API's Idempotency-Key)."
    ),
}


def _object(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


def tool_schemas(settings: Settings) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every tool's ``(description, input schema)``, in the order they are listed."""
    lease = {
        "type": "integer",
        "minimum": settings.lease_min_seconds,
        "maximum": settings.lease_max_seconds,
    }
    channel = _described(_STRING, "Channel id, alias, or the name of a channel you own.")
    message_id = _described(_STRING, "The message (task) id.")
    actor = _described(_STRING, "Your agent's name (the actor recorded on claims and acks).")
    metadata = {"type": "object", "description": "Optional structured fields."}
    label = {"type": "string", "description": "Your agent's name, shown on the message."}
    wait = {"type": "number", "minimum": 0, "maximum": 3600}
    posted = {
        "channel": channel,
        "content": {"type": "string", "description": "The payload: plain text or a JSON string."},
        "metadata": metadata,
        "actor_label": label,
        "idempotency_key": _IDEMPOTENCY,
    }
    return {
        "post_task": (
            "Hand a task to another agent: post it to your claimable channel of that "
            "name (created when missing); exactly one agent can claim it. Returns the "
            "message_id to pass to await_result.",
            _object(posted, "channel", "content"),
        ),
        "broadcast": (
            "Send a message every reader of a channel sees (fan-out: notifications, "
            "status, shared context). Creates a broadcast channel of that name when "
            "none is found.",
            _object(posted, "channel", "content"),
        ),
        "claim_task": (
            "Claim the oldest unclaimed task of a claimable channel in one atomic step. "
            "Returns claimed: null when there is nothing to claim.",
            _object({"channel": channel, "actor": actor}, "channel", "actor"),
        ),
        "claim_next": (
            "Claim the oldest unclaimed task of a claimable channel. With wait, wait up "
            "to that many seconds for one to arrive (long-poll). With lease_seconds, the "
            "claim is a lease: keep it with heartbeat, or it returns to the queue when "
            "the lease lapses.",
            _object(
                {
                    "channel": channel,
                    "actor": actor,
                    "lease_seconds": _described(lease, "Lease length in seconds."),
                    "wait": _described(wait, "Seconds to wait for a task (default 0)."),
                },
                "channel",
            ),
        ),
        "heartbeat": (
            "Extend a lease from claim_next(lease_seconds=...) to now + lease_seconds.",
            _object(
                {
                    "lease_token": _described(_STRING, "The lease_token of the claim."),
                    "lease_seconds": _described(lease, "New lease length in seconds."),
                },
                "lease_token",
            ),
        ),
        "ack": (
            "Acknowledge a task: mark it done. Whoever awaits its result is answered.",
            _object(
                {
                    "message_id": message_id,
                    "actor": actor,
                    "metadata": metadata,
                    "idempotency_key": _IDEMPOTENCY,
                },
                "message_id",
            ),
        ),
        "release": (
            "Give a claimed task back to the queue (only the claiming actor can).",
            _object(
                {"message_id": message_id, "actor": actor, "idempotency_key": _IDEMPOTENCY},
                "message_id",
            ),
        ),
        "subscribe": (
            "Read a channel's messages after a cursor. Pass next_cursor back on the next "
            "call. With wait, an empty read waits up to that many seconds for the next "
            "message (long-poll).",
            _object(
                {
                    "channel": channel,
                    "since": {
                        "type": "string",
                        "description": "Cursor from a previous call. Omit for the start.",
                    },
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                    "wait": _described(wait, "Seconds to wait on an empty read (default 0)."),
                },
                "channel",
            ),
        ),
        "await_result": (
            "Wait until a task you posted is acknowledged, up to timeout_seconds. The "
            "server answers the moment the ack lands (no polling).",
            _object(
                {
                    "channel": channel,
                    "message_id": _described(_STRING, "The message_id returned by post_task."),
                    "timeout_seconds": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": 3600,
                        "default": 60,
                    },
                },
                "channel",
                "message_id",
            ),
        ),
        "list_channels": (
            "Discover channels on this instance (metadata only, never messages). A "
            "channel with access=restricted and is_member=false needs request_access.",
            _object(
                {
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                    "cursor": {"type": "string"},
                }
            ),
        ),
        "create_channel": (
            "Create a channel: claimable (each task goes to one agent) or broadcast "
            "(everyone reads everything); restricted channels admit members only.",
            _object(
                {
                    "name": _described(_STRING, "A short stable name, e.g. 'deploy-jobs'."),
                    "mode": {"type": "string", "enum": ["claimable", "broadcast"]},
                    "access": {"type": "string", "enum": ["open", "restricted"]},
                    "discoverable": {"type": "boolean"},
                    "description": _STRING,
                    "ttl_seconds": {"type": "integer", "minimum": 300, "maximum": 2_592_000},
                    "metadata_schema": {"type": "object"},
                    "idempotency_key": _IDEMPOTENCY,
                },
                "name",
                "mode",
            ),
        ),
        "invite": (
            "Create an invitation to a channel; whoever resolves it becomes a member.",
            _object({"channel": channel, "idempotency_key": _IDEMPOTENCY}, "channel"),
        ),
        "request_access": (
            "Ask the owner of a restricted channel (found with list_channels) to let "
            "you in. Once approved you can read and post.",
            _object(
                {
                    "channel": _described(_STRING, "Channel id or alias."),
                    "reason": {"type": "string"},
                    "idempotency_key": _IDEMPOTENCY,
                },
                "channel",
            ),
        ),
        "issue_key": (
            "Mint a new API key (for a co-agent, or a fresh label). The key is shown once.",
            _object({"agent_label": _STRING}, "agent_label"),
        ),
    }
