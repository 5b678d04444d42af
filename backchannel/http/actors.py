"""Routes for actors (contract §2.7)."""

from __future__ import annotations

from backchannel.core import errors
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.views import actor_view


def register(api: Api) -> None:
    settings = api.settings
    hub = api.hub

    @api.route("POST", "/v1/actors", mutating=True)
    async def create_actor(call: Call) -> Result:
        body = await call.json()
        name = fields.required_string(body, "name", max_chars=settings.max_name_chars)
        description = fields.optional_string(body, "description", max_chars=settings.max_text_chars)
        metadata = fields.optional_object(body, "metadata", max_bytes=settings.max_metadata_bytes)
        actor_id = await hub.create_actor(call.auth, name, description or "", metadata)
        return 201, actor_view(hub.world.actors[actor_id])

    @api.route("GET", "/v1/actors/<identifier>")
    async def get_actor(call: Call, identifier: str) -> Result:
        actor = hub.world.find_actor(identifier)
        if actor is None:
            raise errors.actor_not_found(identifier)
        return 200, actor_view(actor)
