"""What the OpenAPI document says of each route that the router cannot know.

One :class:`Doc` per ``(method, pattern)`` served by the API lane: summary,
request and answer shapes (JSON Schema 2020-12, as OpenAPI 3.1 takes it),
success status and the error codes beyond the ones every route of its kind
can meet (``openapi.py`` adds authentication, body and idempotency errors).
Limits come from the live settings, so the document states this instance's
limits. The object shapes are contract §2.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backchannel.config import Settings

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STRING: Schema = {"type": "string"}
TIMESTAMP: Schema = {"type": "string", "description": "ISO-8601 UTC timestamp"}
OBJECT: Schema = {"type": "object"}
REF_PAIR: Schema = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {"id": STRING, "name": STRING},
}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """An object with these ``required`` and ``optional`` properties."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


def page(item: Schema) -> Schema:
    return obj(
        {"data": {"type": "array", "items": item}, "limit": {"type": "integer"}},
        {"next_cursor": nullable(STRING)},
    )


COMPONENTS: dict[str, Schema] = {
    "Error": obj(
        {"error": STRING, "message": STRING},
        {"request_id": STRING, "documentation_url": STRING},
    ),
    "Channel": obj(
        {
            "id": STRING,
            "owner_id": STRING,
            "created_by_key_id": STRING,
            "name": STRING,
            "mode": {"enum": ["broadcast", "claimable"]},
            "access": {"enum": ["open", "restricted"]},
            "discoverable": {"type": "boolean"},
            "description": STRING,
            "metadata_schema": OBJECT,
            "pinned_message": nullable(STRING),
            "ttl_seconds": {"type": "integer"},
            "retention_days": {"type": "integer"},
            "max_messages": nullable({"type": "integer"}),
            "max_writes_per_minute": nullable({"type": "integer"}),
            "paused": {"type": "boolean"},
            "aliases": {"type": "array", "items": STRING},
            "related_channels": {
                "type": "array",
                "items": obj({"id": STRING, "name": STRING, "mode": STRING}),
            },
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        }
    ),
    "ChannelSummary": obj(
        {
            "id": STRING,
            "name": STRING,
            "mode": STRING,
            "access": STRING,
            "description": STRING,
            "created_at": TIMESTAMP,
            "is_member": {"type": "boolean"},
        }
    ),
    "Message": obj(
        {
            "id": STRING,
            "channel_id": STRING,
            "actor": nullable(REF_PAIR),
            "actor_label": nullable(STRING),
            "content": STRING,
            "metadata": OBJECT,
            "created_at": TIMESTAMP,
            "expires_at": TIMESTAMP,
            "claimed_by": nullable(REF_PAIR),
            "claimed_by_key_id": nullable(STRING),
            "mentions": {"type": "array", "items": REF_PAIR},
            "claimed_at": nullable(TIMESTAMP),
            "acknowledged_by": {
                "type": "array",
                "items": obj({"id": STRING, "name": STRING, "occurred_at": TIMESTAMP}),
            },
            "active": {"type": "boolean"},
        }
    ),
    "ArchivedMessage": obj(
        {
            "id": STRING,
            "channel_id": STRING,
            "actor": nullable(REF_PAIR),
            "actor_label": nullable(STRING),
            "content": STRING,
            "metadata": OBJECT,
            "created_at": TIMESTAMP,
            "expires_at": TIMESTAMP,
            "claimed_by": nullable(REF_PAIR),
            "claimed_at": nullable(TIMESTAMP),
            "archived_at": TIMESTAMP,
            "active": {"const": False},
        }
    ),
    "Actor": obj(
        {
            "id": STRING,
            "owner_id": STRING,
            "created_by_key_id": STRING,
            "name": STRING,
            "description": STRING,
            "metadata": OBJECT,
            "aliases": {"type": "array", "items": STRING},
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        }
    ),
    "MessageEnvelope": obj({"message": ref("Message"), "next_cursor": STRING}),
    "ClaimNext": obj({"claimed": nullable(ref("Message"))}, {"note": STRING}),
}


@dataclass(frozen=True)
class Doc:
    """The human half of one operation."""

    operation_id: str
    summary: str
    tag: str
    status: int = 200
    answer: Schema | None = None
    body: Schema | None = None
    body_required: bool = False
    errors: tuple[str, ...] = ()
    query: list[Schema] = field(default_factory=list)
    deprecated: bool = False
    admin: bool = False


def query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


CHANNEL_READ = ("channel_not_found", "channel_access_denied")
MESSAGE_VERB = ("message_not_found", "message_expired", "channel_access_denied")


def route_docs(settings: Settings) -> dict[tuple[str, str], Doc]:
    """Every API route's :class:`Doc`, with this instance's limits."""
    name: Schema = {"type": "string", "minLength": 1, "maxLength": settings.max_name_chars}
    text: Schema = {"type": "string", "maxLength": settings.max_text_chars}
    metadata: Schema = {
        "type": "object",
        "description": f"at most {settings.max_metadata_bytes} bytes",
    }
    content: Schema = {
        "type": "string",
        "minLength": 1,
        "description": f"at most {settings.max_message_bytes} UTF-8 bytes",
    }
    lease: Schema = {
        "type": "integer",
        "minimum": settings.lease_min_seconds,
        "maximum": settings.lease_max_seconds,
    }
    acting = obj({}, {"actor": STRING, "metadata": metadata})
    post_fields: dict[str, Schema] = {
        "content": content,
        "metadata": metadata,
        "actor": name,
        "actor_label": name,
        "mentions": {"type": "array", "items": STRING},
    }
    page_query = [
        query("cursor", STRING, "`next_cursor` of the previous page; `0` or absent: the start"),
        query("since", STRING, "deprecated alias of `cursor` (or an ISO-8601 time)"),
        query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size"),
    ]
    wait = query(
        "wait",
        {"type": "number", "minimum": 0, "maximum": 3600},
        f"long-poll: seconds to wait for a first message (capped at "
        f"{settings.longpoll_max_wait_seconds:g})",
    )
    claim_answer = obj({"status": STRING, "message": ref("Message")})
    lease_answer = obj({"lease_token": STRING, "expires_at": TIMESTAMP})
    key_answer = obj(
        {
            "key_id": STRING,
            "owner_id": STRING,
            "plan": STRING,
            "active": {"type": "boolean"},
            "scopes": nullable({"type": "array", "items": STRING}),
            "rate_limit": {"type": "integer"},
            "rate_limit_window_seconds": {"type": "integer"},
        }
    )
    return {
        ("POST", "/v1/keys"): Doc(
            "mintKey",
            "Mint an API key (shown once).",
            "keys",
            201,
            obj(
                {"key": STRING, "key_id": STRING, "agent_label": STRING},
                {
                    "expires_at": {"type": "null"},
                    "rate_limit": {"type": "integer"},
                    "rate_limit_window_seconds": {"type": "integer"},
                },
            ),
            obj({"agent_label": name}),
            True,
            ("missing_field", "label_in_use", "minting_closed", "rate_limit_exceeded"),
        ),
        ("GET", "/v1/keys/me"): Doc("getKey", "The calling key.", "keys", answer=key_answer),
        ("DELETE", "/v1/keys/me"): Doc(
            "revokeKey",
            "Revoke the calling key.",
            "keys",
            answer=obj({"key_id": STRING, "revoked": {"const": True}}),
        ),
        ("POST", "/v1/actors"): Doc(
            "createActor",
            "Create an actor (a named identity of the caller's owner).",
            "actors",
            201,
            ref("Actor"),
            obj({"name": name}, {"description": text, "metadata": metadata}),
            True,
            ("missing_field", "invalid_string", "invalid_object"),
        ),
        ("GET", "/v1/actors/<identifier>"): Doc(
            "getActor",
            "An actor by id or alias.",
            "actors",
            answer=ref("Actor"),
            errors=("actor_not_found",),
        ),
        ("POST", "/v1/channels"): Doc(
            "createChannel",
            "Create a channel (claimable: one claimer per message; broadcast: all read).",
            "channels",
            201,
            ref("Channel"),
            obj(
                {"name": name, "mode": {"enum": ["broadcast", "claimable"]}},
                {
                    "access": {"enum": ["open", "restricted"]},
                    "discoverable": {"type": "boolean"},
                    "description": text,
                    "metadata_schema": OBJECT,
                    "pinned_message": text,
                    "related_channels": {"type": "array", "items": STRING},
                    "webhook_url": STRING,
                    "webhook_secret": STRING,
                    "ttl_seconds": {"type": "integer", "minimum": 300, "maximum": 2_592_000},
                    "retention_days": {"type": "integer", "minimum": 1, "maximum": 365},
                    "max_messages": nullable({"type": "integer", "minimum": 1}),
                    "max_writes_per_minute": nullable({"type": "integer", "minimum": 1}),
                },
            ),
            True,
            (
                "missing_field",
                "invalid_string",
                "invalid_object",
                "invalid_mode",
                "invalid_access",
                "invalid_discoverable",
                "invalid_channel_name",
                "invalid_ttl_seconds",
                "invalid_retention_days",
                "invalid_max_messages",
                "invalid_max_writes_per_minute",
                "invalid_related_channels",
                "invalid_webhook_url",
                "channel_not_found",
            ),
        ),
        ("GET", "/v1/channels"): Doc(
            "discoverChannels",
            "Discoverable channels, newest first.",
            "channels",
            answer=page(ref("ChannelSummary")),
            query=page_query,
            errors=("invalid_query",),
        ),
        ("GET", "/v1/channels/<identifier>"): Doc(
            "getChannel",
            "A channel by id, alias or the caller's name.",
            "channels",
            answer=ref("Channel"),
            errors=CHANNEL_READ,
        ),
        ("POST", "/v1/channels/<identifier>/messages"): Doc(
            "postMessage",
            "Post a message; answered once it is durable.",
            "messages",
            201,
            ref("MessageEnvelope"),
            obj({"content": content}, post_fields),
            True,
            (
                *CHANNEL_READ,
                "missing_field",
                "invalid_string",
                "invalid_object",
                "invalid_mentions",
                "content_too_large",
                "metadata_validation_failed",
                "actor_not_found",
                "actor_forbidden",
                "channel_paused",
                "channel_write_rate_exceeded",
            ),
        ),
        ("GET", "/v1/channels/<identifier>/messages"): Doc(
            "listMessages",
            "Live messages after a cursor, oldest first; long-polls with `wait`.",
            "messages",
            answer=page(ref("Message")),
            query=[
                *page_query,
                wait,
                query("status", {"enum": ["unclaimed", "claimed"]}, "only these"),
                query("expiring_before", STRING, "only messages expiring before this time"),
            ],
            errors=(*CHANNEL_READ, "invalid_query", "invalid_limit", "invalid_status"),
        ),
        ("GET", "/v1/channels/<identifier>/history"): Doc(
            "listHistory",
            "Archived messages, newest first.",
            "messages",
            answer=page(ref("ArchivedMessage")),
            query=page_query,
            errors=(*CHANNEL_READ, "invalid_query", "invalid_limit"),
        ),
        ("DELETE", "/v1/messages/<message_id>"): Doc(
            "retractMessage",
            "Retract an unclaimed message (its author or the channel owner).",
            "messages",
            answer=obj({"status": {"const": "retracted"}}),
            errors=(*MESSAGE_VERB, "message_claimed", "forbidden"),
        ),
        ("POST", "/v1/messages/<message_id>/claim"): Doc(
            "claimMessage",
            "Claim a message: the first claim wins, others get 409 already_claimed.",
            "claims",
            answer=claim_answer,
            body=acting,
            errors=(
                *MESSAGE_VERB,
                "already_claimed",
                "channel_not_claimable",
                "actor_forbidden",
                "invalid_string",
                "invalid_object",
            ),
        ),
        ("POST", "/v1/messages/<message_id>/claim-with-lease"): Doc(
            "claimWithLease",
            "Claim with a lease; heartbeat to keep it, or it returns to the pool.",
            "claims",
            answer=obj({"lease_token": STRING, "expires_at": TIMESTAMP, "message": ref("Message")}),
            body=obj({}, {"actor": STRING, "metadata": metadata, "lease_seconds": lease}),
            errors=(
                *MESSAGE_VERB,
                "already_claimed",
                "channel_not_claimable",
                "actor_forbidden",
                "invalid_lease_seconds",
                "invalid_string",
                "invalid_object",
            ),
        ),
        ("POST", "/v1/leases/<lease_token>/heartbeat"): Doc(
            "heartbeatLease",
            "Extend a lease the caller holds.",
            "claims",
            answer=lease_answer,
            body=obj({}, {"lease_seconds": lease}),
            errors=(
                "lease_expired",
                "lease_not_held",
                "invalid_lease_seconds",
                "channel_access_denied",
            ),
        ),
        ("POST", "/v1/messages/<message_id>/release"): Doc(
            "releaseMessage",
            "Give a claimed message back to the pool.",
            "claims",
            answer=claim_answer,
            body=obj({}, {"actor": STRING}),
            errors=(
                *MESSAGE_VERB,
                "not_claimed",
                "forbidden",
                "lease_not_held",
                "channel_not_claimable",
                "actor_forbidden",
                "invalid_string",
            ),
        ),
        ("POST", "/v1/messages/<message_id>/ack"): Doc(
            "ackMessage",
            "Acknowledge a message (the holder's ack ends its lease).",
            "claims",
            answer=claim_answer,
            body=acting,
            errors=(*MESSAGE_VERB, "actor_forbidden", "invalid_string", "invalid_object"),
        ),
        ("POST", "/v1/tasks/post"): Doc(
            "tasksPost",
            "Post a task to the caller's claimable channel of that name (created if missing).",
            "tasks",
            201,
            obj({"message": ref("Message"), "next_cursor": STRING, "channel": STRING}),
            obj({"channel": name, "content": content}, {"actor_label": name, "metadata": metadata}),
            True,
            (
                "missing_field",
                "invalid_string",
                "invalid_object",
                "invalid_channel_name",
                "content_too_large",
                "metadata_validation_failed",
                "channel_paused",
                "channel_write_rate_exceeded",
            ),
        ),
        ("POST", "/v1/tasks/broadcast"): Doc(
            "tasksBroadcast",
            "Post to an existing channel of any mode.",
            "tasks",
            201,
            ref("MessageEnvelope"),
            obj(
                {"channel": STRING, "content": content}, {"actor_label": name, "metadata": metadata}
            ),
            True,
            (
                *CHANNEL_READ,
                "missing_field",
                "invalid_string",
                "invalid_object",
                "content_too_large",
                "metadata_validation_failed",
                "channel_paused",
                "channel_write_rate_exceeded",
            ),
        ),
        ("POST", "/v1/tasks/claim"): Doc(
            "tasksClaim",
            "Claim the channel's oldest unclaimed message, atomically.",
            "tasks",
            answer=ref("ClaimNext"),
            body=obj({"channel": STRING}, {"actor": name, "metadata": metadata}),
            body_required=True,
            errors=(
                *CHANNEL_READ,
                "missing_field",
                "invalid_string",
                "invalid_object",
                "actor_forbidden",
            ),
        ),
        ("POST", "/v1/tasks/subscribe"): Doc(
            "tasksSubscribe",
            "The channel's page after `since`; long-polls up to `wait` seconds.",
            "tasks",
            answer=page(ref("Message")),
            body=obj(
                {"channel": STRING},
                {
                    "since": {"type": ["string", "integer"]},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                    "wait": {"type": "number", "minimum": 0, "maximum": 3600},
                },
            ),
            body_required=True,
            errors=(
                *CHANNEL_READ,
                "missing_field",
                "invalid_string",
                "invalid_limit",
                "invalid_wait",
            ),
        ),
        ("POST", "/v1/tasks/claim-and-ack"): Doc(
            "tasksClaimAndAck",
            "Claim then acknowledge a message (deprecated).",
            "tasks",
            answer=obj({"status": {"const": "claimed_and_acked"}, "message": ref("Message")}),
            body=obj({"message_id": STRING}, {"actor": STRING, "metadata": metadata}),
            body_required=True,
            errors=(
                *MESSAGE_VERB,
                "missing_field",
                "already_claimed",
                "channel_not_claimable",
                "actor_forbidden",
                "invalid_string",
                "invalid_object",
            ),
            deprecated=True,
        ),
        ("POST", "/v1/tasks/<message_id>/result"): Doc(
            "tasksPostResult",
            "Post a task's result to `result-of-<id>` (deprecated).",
            "tasks",
            201,
            obj({"result_channel": STRING, "message": ref("Message")}),
            obj({"content": content}, {"actor_label": name, "metadata": metadata}),
            True,
            (
                *CHANNEL_READ,
                "missing_field",
                "invalid_string",
                "invalid_object",
                "content_too_large",
                "metadata_validation_failed",
                "channel_paused",
                "channel_write_rate_exceeded",
            ),
            deprecated=True,
        ),
        ("GET", "/v1/tasks/<message_id>/result"): Doc(
            "tasksGetResult",
            "The first result of a task (deprecated).",
            "tasks",
            answer=obj({"task_id": STRING, "result": ref("Message")}),
            errors=("result_not_ready", "channel_access_denied"),
            deprecated=True,
        ),
    }
