"""Routes for invitations: create, resolve, revoke (contract §2.5, §3.9, §0.7).

Creating and revoking are the channel owner's. Resolving is open to any
key that holds the id (a multi-use bearer token for 24 h), and it is the
one route the dispatcher leaves keyless: the handler counts the per-IP
lookup limiter first (every call, with a key or without), answers a call
with no ``X-API-Key`` at all with the special 401 ``api_key_required`` body
(no envelope), and only then authenticates the key. The per-key limiter
and scopes do not apply to it.
"""

from __future__ import annotations

from backchannel.core.errors import ApiError
from backchannel.core.membership import require_owner
from backchannel.core.records import Invitation
from backchannel.http.api import Api, Call, Result
from backchannel.http.ratelimit import SlidingWindow
from backchannel.http.views import invitation_view
from backchannel.runtime import access
from backchannel.runtime.actor import ChannelActor

LOOKUP_WINDOW = 60


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings
    lookups = SlidingWindow(settings.invitation_lookup_limit, LOOKUP_WINDOW)

    def view(actor: ChannelActor, invitation: Invitation) -> dict[str, object]:
        return invitation_view(invitation, actor.state.config, hub.clock.now())

    def invitation_actor(invitation_id: str) -> ChannelActor:
        actor = hub.actors.get(hub.world.invitations.get(invitation_id, ""))
        if actor is None:
            raise ApiError(404, "invitation_not_found", "Invitation not found")
        return actor

    @api.route("POST", "/v1/channels/<identifier>/invitations", mutating=True)
    async def create_invitation(call: Call, identifier: str) -> Result:
        # the body is ignored (contract §2.5); the lane drains it
        state = hub.world.resolve_channel(identifier, call.auth)
        require_owner(state.config, call.auth, "create invitations")
        actor = hub.actors[state.config.id]
        invitation = await actor.call(access.invite, actor, call.auth)
        return 201, view(actor, invitation)

    @api.route("GET", "/v1/channel-invitations/<invitation_id>", auth=False)
    async def resolve_invitation(call: Call, invitation_id: str) -> Result:
        allowed, _ = lookups.hit(api.clients.client_ip(call.request))
        if not allowed:
            raise ApiError(
                429,
                "rate_limit_exceeded",
                "Invitation lookup rate limit exceeded",
                retry_after=LOOKUP_WINDOW,
            )
        raw = call.request.text_header(b"x-api-key")
        if raw is None:
            return 401, {
                "error": "api_key_required",
                "message": "An API key is required to resolve this invitation.",
                "redirect_to": settings.invitation_onboarding_url,
            }
        key = api.authenticate(raw)
        actor = invitation_actor(invitation_id)
        invitation = await actor.call(access.resolve_invitation, actor, key, invitation_id)
        return 200, view(actor, invitation)

    @api.route("DELETE", "/v1/channel-invitations/<invitation_id>", mutating=True)
    async def revoke_invitation(call: Call, invitation_id: str) -> Result:
        actor = invitation_actor(invitation_id)
        invitation = await actor.call(access.revoke_invitation, actor, call.auth, invitation_id)
        return 200, view(actor, invitation)
