"""Routes that change a channel itself: PATCH, DELETE, aliases (contract §2.4, §0.7).

All three are the owner's: the channel is resolved with the caller's key
(404 ``channel_not_found``, 403 ``channel_access_denied``), then the owner
is checked (403 ``forbidden``), then the body. PATCH refuses unknown fields
(422 ``invalid_fields``) before it resolves the channel.
"""

from __future__ import annotations

from typing import Any

from backchannel.config import Settings
from backchannel.core.errors import ApiError
from backchannel.core.membership import require_owner
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.delivery import dead_letter_changes
from backchannel.http.views import channel_view
from backchannel.runtime import access

PATCHABLE = (
    "name",
    "mode",
    "access",
    "discoverable",
    "description",
    "metadata_schema",
    "pinned_message",
    "related_channels",
    "retention_days",
    "max_messages",
    "max_writes_per_minute",
    "paused",
    "max_deliveries",
    "dead_letter_channel",
)


def unknown_fields(body: dict[str, Any]) -> None:
    """422 ``invalid_fields`` (with the sorted names) for fields PATCH does not take."""
    unknown = sorted(name for name in body if name not in PATCHABLE)
    if unknown:
        raise ApiError(
            422,
            "invalid_fields",
            "These fields cannot be changed: " + ", ".join(unknown),
            fields=unknown,
        )


def patch_changes(
    body: dict[str, Any], settings: Settings
) -> tuple[dict[str, Any], list[str] | None]:
    """Validate a PATCH body in the allow-list's order, with the creation rules.

    Returns ``(changes, related)``: config values to set, and the
    ``related_channels`` identifiers (None: links unchanged).
    """
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = fields.channel_name(body, settings.max_name_chars)
    if "mode" in body:
        changes["mode"] = fields.channel_mode(body["mode"])
    if "access" in body:
        changes["access"] = fields.channel_access(body["access"])
    if "discoverable" in body:
        changes["discoverable"] = fields.flag(body["discoverable"], "discoverable")
    if "description" in body:
        text = fields.optional_string(body, "description", max_chars=settings.max_text_chars)
        changes["description"] = text or ""
    if "metadata_schema" in body:
        changes["metadata_schema"] = fields.metadata_schema(body, settings.max_metadata_bytes)
    if "pinned_message" in body:
        changes["pinned_message"] = fields.optional_string(
            body, "pinned_message", max_chars=settings.max_text_chars
        )
    related = fields.string_list(body, "related_channels", "invalid_related_channels")
    changes.update(fields.channel_limits(body))
    if "paused" in body:
        changes["paused"] = fields.flag(body["paused"], "paused")
    return changes, related


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings

    @api.route("PATCH", "/v1/channels/<identifier>", mutating=True)
    async def patch_channel(call: Call, identifier: str) -> Result:
        body = await call.json()
        unknown_fields(body)
        state = hub.world.resolve_channel(identifier, call.auth)
        require_owner(state.config, call.auth, "update a channel")
        changes, related = patch_changes(body, settings)
        changes.update(dead_letter_changes(body, hub, call.auth, state.config))
        actor = hub.actors[state.config.id]
        config = await actor.call(access.update, actor, call.auth, changes, related)
        return 200, channel_view(config, hub.world, call.auth.key_id)

    @api.route("DELETE", "/v1/channels/<identifier>", mutating=True)
    async def delete_channel(call: Call, identifier: str) -> Result:
        await hub.delete_channel(call.auth, identifier)
        return 204, None

    @api.route("POST", "/v1/channels/<identifier>/aliases", mutating=True)
    async def add_alias(call: Call, identifier: str) -> Result:
        body = await call.json()
        state = hub.world.resolve_channel(identifier, call.auth)
        require_owner(state.config, call.auth, "add channel aliases")
        alias = fields.required_string(body, "alias", max_chars=settings.max_name_chars)
        actor = hub.actors[state.config.id]
        config = await actor.call(access.add_alias, actor, call.auth, alias)
        return 201, channel_view(config, hub.world, call.auth.key_id)
