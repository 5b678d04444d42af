"""Routes for actors (contract §2.7): create, read, alias, mention webhook.

Aliasing an actor and managing its webhook are its owner's (§0.7): another
owner's key gets 403 ``actor_forbidden``. Webhooks are only registered and
stored here; delivery belongs to the webhook sender.
"""

from __future__ import annotations

from backchannel.core import errors
from backchannel.core.webhooks import MAX_SECRET_CHARS, checked_url, owned_actor
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.views import actor_view, webhook_view


def register(api: Api) -> None:
    settings = api.settings
    hub = api.hub
    world = hub.world

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

    @api.route("POST", "/v1/actors/<identifier>/aliases", mutating=True)
    async def alias_actor(call: Call, identifier: str) -> Result:
        """Checks: alias (422) → actor by id or alias (404) → owner (403) → taken (409)."""
        body = await call.json()
        alias = fields.required_string(body, "alias", max_chars=settings.max_name_chars)
        event = world.decide_alias_actor(call.auth, identifier, alias, hub.clock.now())
        await hub.commit(event)
        return 201, actor_view(world.actors[event.actor_id])

    @api.route("POST", "/v1/actors/<actor_id>/webhook", mutating=True)
    async def set_webhook(call: Call, actor_id: str) -> Result:
        """Register or replace the mention webhook.

        Checks: URL (422) → actor by id, never alias (404) → owner (403).
        """
        body = await call.json()
        url = checked_url(body.get("url"))
        secret = fields.optional_string(body, "secret", max_chars=MAX_SECRET_CHARS)
        actor = owned_actor(world.actors, call.auth, actor_id)
        await hub.commit(world.webhooks.decide_set(actor, url, secret, hub.clock.now()))
        return 200, {"actor_id": actor.id, "url": url, "has_secret": secret is not None}

    @api.route("GET", "/v1/actors/<actor_id>/webhook")
    async def get_webhook(call: Call, actor_id: str) -> Result:
        actor = owned_actor(world.actors, call.auth, actor_id)
        return 200, webhook_view(world.webhooks.get(actor))

    @api.route("DELETE", "/v1/actors/<actor_id>/webhook", mutating=True)
    async def delete_webhook(call: Call, actor_id: str) -> Result:
        """Deleting when none is registered still succeeds."""
        actor = owned_actor(world.actors, call.auth, actor_id)
        await hub.commit(world.webhooks.decide_delete(actor, hub.clock.now()))
        return 200, {"deleted": True}
