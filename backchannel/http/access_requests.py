"""Routes for access requests: ask to join, list, approve, deny (contract §2.5).

These resolve the channel by id or alias only, without the caller's key and
without an access check: asking to join a restricted channel is the point.
Listing and deciding are the owner's (403 ``forbidden``).
"""

from __future__ import annotations

from backchannel.core.errors import ApiError
from backchannel.core.membership import require_owner
from backchannel.http.api import Api, Call, Result
from backchannel.http.views import access_request_view
from backchannel.runtime import access

_OPEN_NOTE = "Channel is open; no access request needed — you can already read and post."


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings

    @api.route("POST", "/v1/channels/<identifier>/access-requests", mutating=True)
    async def request_access(call: Call, identifier: str) -> Result:
        body = await call.json()
        reason = body.get("reason")
        if reason is not None:
            if not isinstance(reason, str):
                raise ApiError(422, "invalid_string", "'reason' must be a string")
            reason = reason.strip()
            if len(reason) > settings.max_text_chars:
                raise ApiError(
                    422,
                    "invalid_string",
                    f"'reason' must be at most {settings.max_text_chars} characters",
                )
        actor = hub.channel_actor(identifier, None)
        status, request_id = await actor.call(access.request_access, actor, call.auth, reason)
        if status == "open":
            return 200, {"status": "open", "note": _OPEN_NOTE}
        if status == "already_member":
            return 200, {"status": "already_member"}
        return 202, {"status": "pending", "request_id": request_id}

    @api.route("GET", "/v1/channels/<identifier>/access-requests")
    async def list_requests(call: Call, identifier: str) -> Result:
        state = hub.world.resolve_channel(identifier, None)
        require_owner(state.config, call.auth, "view access requests")
        pending = [r for r in state.ledger.requests.values() if r.status == "pending"]
        return 200, {"data": [access_request_view(r, state.config.id) for r in pending]}

    async def decide(call: Call, identifier: str, request_id: str, approve: bool) -> Result:
        actor = hub.channel_actor(identifier, None)
        request = await actor.call(access.decide_request, actor, call.auth, request_id, approve)
        return 200, {
            "status": request.status,
            "request_id": request.id,
            "requester_key_id": request.requester_key_id,
        }

    @api.route(
        "POST", "/v1/channels/<identifier>/access-requests/<request_id>/approve", mutating=True
    )
    async def approve(call: Call, identifier: str, request_id: str) -> Result:
        return await decide(call, identifier, request_id, True)

    @api.route("POST", "/v1/channels/<identifier>/access-requests/<request_id>/deny", mutating=True)
    async def deny(call: Call, identifier: str, request_id: str) -> Result:
        return await decide(call, identifier, request_id, False)
