"""The ``/v1/tasks/*`` verb aliases (contract §2.9) served so far: claim-next."""

from __future__ import annotations

from backchannel.core import errors
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.views import message_view


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings

    @api.route("POST", "/v1/tasks/claim", mutating=True)
    async def claim_next(call: Call) -> Result:
        """Claim the channel's oldest unclaimed message in one atomic step."""
        body = await call.json()
        if not isinstance(body.get("channel"), str) or not body["channel"].strip():
            raise errors.missing_field("channel")
        acting = fields.optional_string(body, "actor", max_chars=settings.max_name_chars)
        fields.optional_object(body, "metadata", max_bytes=settings.max_metadata_bytes)
        actor = hub.channel_actor(body["channel"].strip(), call.auth)
        message = await actor.call(actor.cmd_claim_next, call.auth, acting)
        if message is None:
            return 200, {"claimed": None, "note": "no unclaimed messages available"}
        return 200, {"claimed": message_view(message, actor.channel_id, hub.clock.now())}
