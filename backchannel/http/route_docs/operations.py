"""Route docs of keys' scopes, actor aliases and webhooks, sessions, the
security audit and the operator's admin routes (contract §2.3, §2.7, §2.8,
§2.10, §2.11)."""

from __future__ import annotations

from backchannel.config import Settings
from backchannel.http.route_docs.shapes import (
    CHANNEL_READ,
    OBJECT,
    STRING,
    TIMESTAMP,
    Doc,
    Fields,
    nullable,
    obj,
    query,
    ref,
)

SESSION = obj(
    {
        "id": STRING,
        "name": STRING,
        "state": OBJECT,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
        "expires_at": TIMESTAMP,
    }
)
WEBHOOK = obj(
    {"actor_id": STRING, "url": STRING, "has_secret": {"type": "boolean"}},
    {"updated_at": TIMESTAMP},
)
AUDIT_EVENT = obj(
    {
        "id": STRING,
        "occurred_at": TIMESTAMP,
        "actor_key_id": nullable(STRING),
        "subject_key_id": nullable(STRING),
        "event_type": STRING,
        "remote_addr": nullable(STRING),
        "detail": OBJECT,
    }
)
MINTED = obj(
    {"key": STRING, "key_id": STRING, "agent_label": STRING},
    {
        "expires_at": {"type": "null"},
        "rate_limit": {"type": "integer"},
        "rate_limit_window_seconds": {"type": "integer"},
    },
)
ADMIN = ("admin_disabled", "admin_unauthorized")
INTEGER = {"type": "integer"}


def docs(settings: Settings) -> dict[tuple[str, str], Doc]:
    """Scopes, actor aliases and webhooks, sessions, audit, admin."""
    f = Fields(settings)
    webhook_body = obj({"url": STRING}, {"secret": STRING})
    actor_owned = ("actor_not_found", "actor_forbidden")
    return {
        ("PUT", "/v1/keys/me/scopes"): Doc(
            "setKeyScopes",
            "Narrow the calling key's scopes (a key can never widen them).",
            "keys",
            answer=obj({"key_id": STRING, "scopes": nullable({"type": "array", "items": STRING})}),
            body=obj({"scopes": {"type": "array", "items": STRING}}),
            body_required=True,
            errors=("invalid_scopes", "invalid_scope", "insufficient_scope"),
        ),
        ("POST", "/v1/actors/<identifier>/aliases"): Doc(
            "addActorAlias",
            "Give one of your actors a global alias.",
            "actors",
            201,
            ref("Actor"),
            obj({"alias": f.name}),
            True,
            (*actor_owned, "missing_field", "invalid_string", "alias_conflict"),
        ),
        ("POST", "/v1/actors/<actor_id>/webhook"): Doc(
            "setMentionWebhook",
            "Register (or replace) the webhook that messages mentioning this actor call.",
            "actors",
            answer=obj({"actor_id": STRING, "url": STRING, "has_secret": {"type": "boolean"}}),
            body=webhook_body,
            body_required=True,
            errors=(*actor_owned, "invalid_webhook_url", "invalid_string"),
        ),
        ("GET", "/v1/actors/<actor_id>/webhook"): Doc(
            "getMentionWebhook",
            "The actor's mention webhook (the secret is never shown).",
            "actors",
            answer=WEBHOOK,
            errors=(*actor_owned, "webhook_not_found"),
        ),
        ("DELETE", "/v1/actors/<actor_id>/webhook"): Doc(
            "deleteMentionWebhook",
            "Remove the actor's mention webhook.",
            "actors",
            answer=obj({"deleted": {"const": True}}),
            errors=actor_owned,
        ),
        ("GET", "/v1/sessions"): Doc(
            "listSessions",
            "The calling key's sessions.",
            "sessions",
            answer=obj({"data": {"type": "array", "items": SESSION}}),
        ),
        ("POST", "/v1/sessions"): Doc(
            "createSession",
            "Create a small key/value document that lives 24 h.",
            "sessions",
            201,
            SESSION,
            obj({"name": f.name}, {"state": OBJECT}),
            True,
            ("missing_field", "invalid_string", "invalid_object"),
        ),
        ("GET", "/v1/sessions/<session_id>"): Doc(
            "getSession",
            "One of the calling key's sessions.",
            "sessions",
            answer=SESSION,
            errors=("session_not_found",),
        ),
        ("PATCH", "/v1/sessions/<session_id>"): Doc(
            "updateSession",
            "Merge `state` into the session (shallow).",
            "sessions",
            answer=SESSION,
            body=obj({}, {"state": OBJECT}),
            errors=("session_not_found", "invalid_object"),
        ),
        ("DELETE", "/v1/sessions/<session_id>"): Doc(
            "deleteSession",
            "Delete a session.",
            "sessions",
            answer=obj({"status": {"const": "deleted"}}),
            errors=("session_not_found",),
        ),
        ("GET", "/v1/security/audit"): Doc(
            "securityAudit",
            "Security events that concern the calling key, newest first.",
            "keys",
            answer=obj(
                {"data": {"type": "array", "items": AUDIT_EVENT}, "count": {"type": "integer"}}
            ),
            query=[query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "rows")],
        ),
        ("GET", "/v1/observability/metrics"): Doc(
            "observabilityMetrics",
            "Counts for the calling key: channels it owns, their messages, its sessions.",
            "observability",
            answer=obj(
                {
                    "key_id": STRING,
                    "channels_owned": INTEGER,
                    "messages_in_owned_channels": INTEGER,
                    "messages_claimed_in_owned_channels": INTEGER,
                    "active_sessions": INTEGER,
                }
            ),
        ),
        ("GET", "/v1/channels/<identifier>/metrics"): Doc(
            "channelMetrics",
            "A channel's live counts: unclaimed, claimed, leased, acknowledged, waiters.",
            "observability",
            answer=obj(
                {
                    "channel_id": STRING,
                    "message_counts": obj(
                        {
                            "total": INTEGER,
                            "unclaimed": INTEGER,
                            "claimed": INTEGER,
                            "acknowledged": INTEGER,
                        }
                    ),
                    "avg_claim_to_ack_ms": nullable(INTEGER),
                    "computed_at": TIMESTAMP,
                    "waiters": INTEGER,
                    "unclaimed": INTEGER,
                    "claimed": INTEGER,
                    "leased": INTEGER,
                }
            ),
            errors=CHANNEL_READ,
        ),
        ("POST", "/v1/admin/keys"): Doc(
            "adminMintKey",
            "Mint a key as the operator, whether public minting is open or not.",
            "admin",
            201,
            MINTED,
            obj({"agent_label": f.name}),
            True,
            (*ADMIN, "missing_field", "label_in_use"),
            admin=True,
        ),
        ("POST", "/v1/admin/minting"): Doc(
            "adminSetMinting",
            "Open or close public key minting (kept across restarts).",
            "admin",
            answer=obj({"public_minting_enabled": {"type": "boolean"}}),
            body=obj({"enabled": {"type": "boolean"}}),
            body_required=True,
            errors=(*ADMIN, "invalid_field"),
            admin=True,
        ),
        ("POST", "/v1/admin/channels/<identifier>/pause"): Doc(
            "adminPauseChannel",
            "Refuse posts to a channel (503 channel_paused); reads and claims go on.",
            "admin",
            answer=ref("Channel"),
            errors=(*ADMIN, *CHANNEL_READ[:1]),
            admin=True,
        ),
        ("POST", "/v1/admin/channels/<identifier>/resume"): Doc(
            "adminResumeChannel",
            "Accept posts to a paused channel again.",
            "admin",
            answer=ref("Channel"),
            errors=(*ADMIN, *CHANNEL_READ[:1]),
            admin=True,
        ),
    }
