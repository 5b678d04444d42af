"""The vocabulary of the route docs: :class:`Doc`, schema helpers, the
contract's objects (§2.2) as JSON Schema, and the field schemas whose
limits come from the live settings."""

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
            "max_deliveries": nullable({"type": "integer"}),
            "dead_letter_channel": nullable(STRING),
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
            "deliveries": {"type": "integer", "description": "claims of it that began"},
            "visible_at": TIMESTAMP,
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
            "reason": {
                "enum": ["expired", "retracted", "trimmed", "dead_lettered", "redriven"],
            },
            "deliveries": {"type": "integer"},
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
    "ClaimNext": obj(
        {"claimed": nullable(ref("Message"))},
        {"note": STRING, "lease_token": STRING, "expires_at": TIMESTAMP},
    ),
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
    also: tuple[int, ...] = ()  # other success statuses with the same answer
    media: str = "application/json"  # the success answer's content type


def query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


CHANNEL_READ = ("channel_not_found", "channel_access_denied")
WAIT: Schema = {
    "type": "number",
    "minimum": 0,
    "maximum": 3600,
    "description": "seconds to wait for a message (capped at the long-poll maximum)",
}
DEAD_LETTER_FIELDS: dict[str, Schema] = {
    "max_deliveries": nullable({"type": "integer", "minimum": 1, "maximum": 1000}),
    "dead_letter_channel": nullable(
        {"type": "string", "description": "id or alias of another channel you own"}
    ),
}
MESSAGE_VERB = ("message_not_found", "message_expired", "channel_access_denied")


class Fields:
    """Request field schemas with this instance's limits."""

    def __init__(self, settings: Settings) -> None:
        self.name: Schema = {"type": "string", "minLength": 1, "maxLength": settings.max_name_chars}
        self.text: Schema = {"type": "string", "maxLength": settings.max_text_chars}
        self.metadata: Schema = {
            "type": "object",
            "description": f"at most {settings.max_metadata_bytes} bytes",
        }
        self.content: Schema = {
            "type": "string",
            "minLength": 1,
            "description": f"at most {settings.max_message_bytes} UTF-8 bytes",
        }
        self.lease: Schema = {
            "type": "integer",
            "minimum": settings.lease_min_seconds,
            "maximum": settings.lease_max_seconds,
        }
        self.limit = query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size")
