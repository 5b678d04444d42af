"""Routes for a channel's members and its event log (contract §2.5).

Every route here is the owner's: the channel is resolved with the caller's
key (404 / 403 ``channel_access_denied``), then the owner is checked (403
``forbidden``). Reads are served in the caller's task (one synchronous
step, like a message page); changes go through the channel's actor.
"""

from __future__ import annotations

from backchannel.core.membership import require_owner
from backchannel.core.timefmt import parse_ts
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.views import EVENT_CURSOR, event_cursor, log_entry_view, member_view
from backchannel.runtime import access


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings

    @api.route("GET", "/v1/channels/<identifier>/members")
    async def list_members(call: Call, identifier: str) -> Result:
        config = hub.world.resolve_channel(identifier, call.auth).config
        require_owner(config, call.auth, "list members")
        members = sorted(config.members.values(), key=lambda m: m.granted_at)
        return 200, {"data": [member_view(m, config.id) for m in members]}

    @api.route("POST", "/v1/channels/<identifier>/members", mutating=True)
    async def add_member(call: Call, identifier: str) -> Result:
        body = await call.json()
        state = hub.world.resolve_channel(identifier, call.auth)
        require_owner(state.config, call.auth, "add members")
        key_id = fields.required_string(body, "key_id", max_chars=settings.max_name_chars)
        actor = hub.actors[state.config.id]
        member = await actor.call(access.add_member, actor, call.auth, key_id)
        return 201, member_view(member, state.config.id)

    @api.route("DELETE", "/v1/channels/<identifier>/members/<member_key_id>", mutating=True)
    async def remove_member(call: Call, identifier: str, member_key_id: str) -> Result:
        actor = hub.channel_actor(identifier, call.auth)
        await actor.call(access.remove_member, actor, call.auth, member_key_id)
        return 200, {"status": "removed"}

    @api.route("GET", "/v1/channels/<identifier>/events")
    async def list_events(call: Call, identifier: str) -> Result:
        state = hub.world.resolve_channel(identifier, call.auth)
        require_owner(state.config, call.auth, "read channel events")
        args = call.query
        limit = fields.query_limit(args.get("limit"))
        raw = args.get("since") or args.get("cursor")
        after_seq, after_time = 0, None
        if raw and raw.startswith(EVENT_CURSOR) and raw[1:].isdigit() and len(raw) < 20:
            after_seq = int(raw[1:])
        elif raw and raw != "0":
            after_time = parse_ts(raw)
        page = state.ledger.log_page(after_seq, after_time, limit, hub.clock.now())
        data = [log_entry_view(entry, state.config.id) for entry in page]
        next_cursor = event_cursor(page[-1].seq) if page else raw
        return 200, {"data": data, "limit": limit, "next_cursor": next_cursor}
