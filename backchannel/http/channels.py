"""Routes for channels: create, discover, read (contract §2.4)."""

from __future__ import annotations

from typing import Any

from backchannel.core import errors
from backchannel.core.records import OPEN
from backchannel.core.timefmt import parse_ts
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.delivery import dead_letter_changes
from backchannel.http.views import channel_view, discover_view


def _channel_spec(body: dict[str, Any], api: Api) -> tuple[dict[str, Any], list[str]]:
    """Validate a create body in the contract's order; returns (spec, related ids)."""
    settings = api.settings
    name = fields.channel_name(body, settings.max_name_chars)
    if "mode" not in body:
        raise errors.missing_field("mode")
    mode = fields.channel_mode(body["mode"])
    access = fields.channel_access(body.get("access", OPEN))
    spec = api.hub.channel_defaults(access)
    spec["name"] = name
    spec["mode"] = mode
    if body.get("discoverable") is not None:
        spec["discoverable"] = fields.flag(body["discoverable"], "discoverable")
    description = fields.optional_string(body, "description", max_chars=settings.max_text_chars)
    spec["description"] = description or ""
    spec["metadata_schema"] = fields.metadata_schema(body, settings.max_metadata_bytes)
    spec["pinned_message"] = fields.optional_string(
        body, "pinned_message", max_chars=settings.max_text_chars
    )
    related = fields.string_list(body, "related_channels", "invalid_related_channels") or []
    spec["webhook_url"] = fields.webhook_url(
        body, "webhook_url", allow_private=settings.webhook_allow_private
    )
    spec["webhook_secret"] = fields.optional_string(body, "webhook_secret", max_chars=512)
    if "ttl_seconds" in body:
        spec["ttl_seconds"] = fields.bounded_int(
            body["ttl_seconds"],
            300,
            2_592_000,
            "invalid_ttl_seconds",
            "'ttl_seconds' must be an integer between 300 and 2592000",
        )
    # the core reads config.max_* at every post; the write window records posts
    # only while max_writes_per_minute is set
    spec.update(fields.channel_limits(body))
    return spec, related


def register(api: Api) -> None:
    hub = api.hub

    @api.route("POST", "/v1/channels", mutating=True, scope="channels:write")
    async def create_channel(call: Call) -> Result:
        body = await call.json()
        spec, related = _channel_spec(body, api)
        spec.update(dead_letter_changes(body, hub, call.auth, None))
        state = await hub.create_channel(call.auth, spec, related)
        return 201, channel_view(state.config, hub.world, call.auth.key_id)

    @api.route("GET", "/v1/channels")
    async def discover(call: Call) -> Result:
        args = call.query
        limit = fields.query_limit(args.get("limit"), strict=False)
        raw_cursor = args.get("cursor") or args.get("since")
        before = parse_ts(raw_cursor) if raw_cursor and raw_cursor != "0" else None
        key_id = call.auth.key_id
        page = []
        for state in hub.world.discoverable():
            if before is not None and state.config.created_at >= before:
                continue
            page.append(discover_view(state.config, key_id))
            if len(page) >= limit:
                break
        next_cursor = page[-1]["created_at"] if len(page) == limit else None
        return 200, {"data": page, "limit": limit, "next_cursor": next_cursor}

    @api.route("GET", "/v1/channels/<identifier>")
    async def get_channel(call: Call, identifier: str) -> Result:
        state = hub.world.resolve_channel(identifier, call.auth)
        return 200, channel_view(state.config, hub.world, call.auth.key_id)
