"""The discovery documents and pages of contract §2.12, rendered for one instance.

Every text is a package-data template using :class:`string.Template`
placeholders (``$base``, ``$max_content_bytes``, ...), so JSON braces in the
examples need no escaping and a misspelt placeholder fails loudly
(``KeyError``) instead of reaching an agent. The values come from the live
:class:`Settings` and the advertised base URL, so a document never states a
limit the server does not enforce.

Examples in the texts are written in one format that agents read easily and
``tests/http/test_agent_docs.py`` runs against a live server, in order::

    ```http
    POST $base/v1/channels
    X-API-Key: <key>
    Content-Type: application/json

    {"name": "deploy-jobs", "mode": "claimable"}
    ```
    → 201 — save `id` as `<channel_id>`

The line after the fence states the status (and, for an error, its code);
``save `field.path` as `<name>``` tells the reader (and the runner) which
field of the answer fills a later ``<name>``. A block fenced ``http-later``
describes a route that is not served by this build yet: the runner skips
it. Remove the marker once the route is served.
"""

from __future__ import annotations

import html
from functools import cache
from importlib import resources
from string import Template
from typing import Any

from backchannel import __version__
from backchannel.config import Settings

DOC_NAMES = (
    "protocol",
    "errors",
    "reliability",
    "sla",
    "roadmap",
    "invitations-flow",
    "auth-integration",
)
MCP_TOOLS = [
    "post_task",
    "claim_task",
    "await_result",
    "broadcast",
    "subscribe",
    "list_channels",
    "issue_key",
]
CAPABILITIES = [
    "multi_agent_coordination",
    "atomic_task_handoff",
    "claim_with_lease_and_heartbeat",
    "broadcast_fanout",
    "restricted_channels_with_invitations",
    "per_channel_metadata_schema",
    "idempotent_writes",
]
FRAMEWORKS = [
    "langchain",
    "langgraph",
    "crewai",
    "autogen",
    "llamaindex",
    "openai-agents-sdk",
    "claude-code",
    "mcp",
]
TAGLINE = "Atomic work handoff between AI agents over plain HTTP."
DESCRIPTION = (
    "Backchannel lets agents that share no process hand work to each other: claimable "
    "channels (first claim wins, leases with heartbeats), broadcast channels, long-poll, "
    "history and idempotent writes. Every answered write is durable."
)


@cache
def _source(name: str) -> Template:
    return Template(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


def _exact(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _number(value: float) -> str:
    return str(_exact(value))


def values(settings: Settings, base_url: str, minting_open: bool) -> dict[str, str]:
    """Everything a template may name, as text."""
    if settings.rate_limit:
        rate = f"{settings.rate_limit} requests per {settings.rate_limit_window} s per key"
    else:
        rate = "no per-key request limit on this instance"
    if settings.key_mint_limit:
        window = settings.key_mint_window
        mint = f"{settings.key_mint_limit} new keys per client address per {window} s"
    else:
        mint = "no limit on minting keys"
    if settings.longpoll_enabled:
        longpoll = (
            f"on: `wait` is capped at {_number(settings.longpoll_max_wait_seconds)} s, "
            f"with up to {settings.longpoll_max_waiters} parked readers"
        )
    else:
        longpoll = "off on this instance: `wait` is ignored and every read answers at once"
    if minting_open:
        minting = "Anyone may mint a key with `POST /v1/keys` (no sign-up)."
    else:
        minting = (
            "Public minting is closed on this instance: ask its operator for a key "
            "(`POST /v1/keys` answers 403 `minting_closed`)."
        )
    if settings.fsync == "always":
        durability = (
            "Every write that was answered is on disk: a crash after the answer loses nothing."
        )
    else:
        when = "about once a second" if settings.fsync == "interval" else "when the OS decides"
        durability = (
            f"This instance writes its log to disk {when} (`--fsync {settings.fsync}`): "
            "a crash can lose the last writes it answered."
        )
    if settings.sandbox_enabled:
        sandbox = ""
    else:
        sandbox = "(This instance has no sandbox channel: skip the next two requests.)"
    return {
        "base": base_url,
        "durability": durability,
        "sandbox_note": sandbox,
        "version": __version__,
        "instance_kind": settings.instance_kind,
        "minting": minting,
        "minting_open": "yes" if minting_open else "no",
        "rate_limit": rate,
        "rate_limit_requests": str(settings.rate_limit),
        "rate_limit_window": str(settings.rate_limit_window),
        "key_mint_limit": mint,
        "max_content_bytes": str(settings.max_message_bytes),
        "max_body_bytes": str(settings.max_body_bytes),
        "max_metadata_bytes": str(settings.max_metadata_bytes),
        "max_name_chars": str(settings.max_name_chars),
        "max_text_chars": str(settings.max_text_chars),
        "lease_min": str(settings.lease_min_seconds),
        "lease_max": str(settings.lease_max_seconds),
        "lease_default": str(settings.lease_default_seconds),
        "longpoll": longpoll,
        "longpoll_max_wait": _number(settings.longpoll_max_wait_seconds),
        "stream_keepalive": _number(settings.stream_keepalive_seconds),
        "stream_max_per_key": str(settings.stream_max_per_key),
        "idempotency_hours": _number(settings.idempotency_ttl_seconds / 3600),
        "ttl_hours": _number(settings.default_ttl_seconds / 3600),
        "retention_days": str(settings.default_retention_days),
        "sandbox_ttl": str(settings.sandbox_ttl_seconds),
        "sandbox_max_messages": str(settings.sandbox_max_messages),
        "sandbox_writes": str(settings.sandbox_max_writes_per_minute),
    }


def render(name: str, settings: Settings, base_url: str, minting_open: bool) -> str:
    """The text template ``name`` (e.g. ``llms.txt``, ``docs/sla.md``) for this instance."""
    return _source(name).substitute(values(settings, base_url, minting_open))


def render_page(name: str, settings: Settings, base_url: str, minting_open: bool) -> str:
    """An HTML page template, with every value HTML-escaped (and its Markdown backticks dropped)."""
    texts = values(settings, base_url, minting_open).items()
    escaped = {k: html.escape(v.replace("`", "")) for k, v in texts}
    return _source(name).substitute(escaped)


def script(name: str) -> str:
    """A static script (no placeholders)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def ai_manifest(settings: Settings, base_url: str, minting_open: bool) -> dict[str, Any]:
    if minting_open:
        obtain = (
            f'POST {base_url}/v1/keys with {{"agent_label": "<your-name>"}}; the answer\'s '
            "`key` goes in the X-API-Key header of every call."
        )
    else:
        obtain = "Public minting is closed on this instance: ask its operator for a key."
    return {
        "name": "Backchannel",
        "tagline": TAGLINE,
        "description": DESCRIPTION,
        "api_version": "1.0",
        "base_url": base_url,
        "auth": {
            "type": "api_key",
            "header": "X-API-Key",
            "obtain_url": f"{base_url}/v1/keys",
            "obtain_description": obtain,
            "public_minting_enabled": minting_open,
        },
        "transports": {
            "http": {"openapi_url": f"{base_url}/openapi.json"},
            "mcp": {
                "package": "backchannel-mcp",
                "install": "pip install backchannel-mcp && "
                f"BACKCHANNEL_BASE_URL={base_url} backchannel-mcp",
                "tools": MCP_TOOLS,
            },
        },
        "capabilities": CAPABILITIES,
        "claim_guarantees": {
            "exclusivity": "first_valid_claim_wins",
            "duplicate_response": "409 already_claimed",
            "redelivery": "lease_expiry_returns_message_to_queue",
        },
        "recommended_system_prompt_snippet": (
            f"You can hand work to other agents through Backchannel at {base_url}. "
            f"Read {base_url}/llms.txt first; send X-API-Key on every call and an "
            "Idempotency-Key on every write you may retry."
        ),
        "openapi_url": f"{base_url}/openapi.json",
        "agent_guide_url": f"{base_url}/agent-guide",
        "llms_txt_url": f"{base_url}/llms.txt",
        "supported_frameworks": FRAMEWORKS,
    }


def ai_plugin(base_url: str) -> dict[str, Any]:
    return {
        "schema_version": "v1",
        "name_for_human": "Backchannel",
        "name_for_model": "backchannel",
        "description_for_human": TAGLINE,
        "description_for_model": (
            "Hand work to other agents and receive theirs: create a claimable or broadcast "
            "channel, post messages, long-poll for new ones, claim (first claim wins, 409 "
            "already_claimed for the rest), hold a lease with heartbeats, acknowledge. Send "
            f"the key in X-API-Key. Read {base_url}/llms.txt first."
        ),
        "auth": {"type": "user_http", "authorization_type": "bearer"},
        "api": {
            "type": "openapi",
            "url": f"{base_url}/openapi.json",
            "is_user_authenticated": True,
        },
        "logo_url": f"{base_url}/favicon.ico",
        "contact_email": "",
        "legal_info_url": f"{base_url}/docs/protocol.md",
    }


def agent_policy(settings: Settings) -> dict[str, Any]:
    """The limits an agent must plan for, from the live settings."""
    if settings.rate_limit:
        note = (
            f"{settings.rate_limit} requests per {settings.rate_limit_window} s per key; watch "
            "X-RateLimit-Remaining and sleep Retry-After seconds on a 429."
        )
    else:
        note = "This instance sets no per-key request limit (X-RateLimit-Limit: 0)."
    return {
        "rate_limit": {
            "requests_per_window": settings.rate_limit,
            "window_seconds": settings.rate_limit_window,
            "note": note,
        },
        "retry_guidance": {
            "on_429": "back_off_and_retry",
            "retry_after_header": True,
            "idempotency_key_supported": True,
        },
        "message_ttl_hours": _exact(settings.default_ttl_seconds / 3600),
        "max_content_bytes": settings.max_message_bytes,
        "claim_guarantee": "exactly_once",
        "instance_kind": settings.instance_kind,
        "max_body_bytes": settings.max_body_bytes,
        "lease_seconds": {
            "min": settings.lease_min_seconds,
            "max": settings.lease_max_seconds,
            "default": settings.lease_default_seconds,
        },
        "longpoll_max_wait_seconds": (
            settings.longpoll_max_wait_seconds if settings.longpoll_enabled else 0
        ),
        "idempotency_ttl_hours": _exact(settings.idempotency_ttl_seconds / 3600),
    }
