"""Operator routes behind ``X-Admin-Token`` (contract §2.3, §2.10, §3.11).

Admin routes bypass API-key authentication, the per-key limiter and
idempotency. With ``BACKCHANNEL_ADMIN_TOKEN`` unset every one of them is
403 ``admin_disabled``; otherwise a missing or wrong token is 401
``admin_unauthorized`` (compared in constant time). The token is checked
before anything else, so an unauthenticated caller learns nothing about
channels or bodies.
"""

from __future__ import annotations

import hmac

from backchannel.core.errors import ApiError
from backchannel.http.api import Api, Call, Result
from backchannel.http.keys import mint_label, minted
from backchannel.http.views import channel_view


def require_admin(api: Api, call: Call) -> None:
    """Pass when the request carries the configured admin token."""
    token = api.settings.admin_token
    if not token:
        raise ApiError(403, "admin_disabled", "The admin API is disabled on this instance")
    given = call.request.header(b"x-admin-token") or b""
    if not hmac.compare_digest(given, token.encode()):
        raise ApiError(401, "admin_unauthorized", "Missing or invalid X-Admin-Token")


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings

    @api.route("POST", "/v1/admin/keys", auth=False)
    async def admin_mint(call: Call) -> Result:
        """Mint a key whether public minting is open or not; no mint limiter."""
        require_admin(api, call)
        label = mint_label(await call.json())
        raw, key = await hub.mint_key(
            label, audit_type="key.issue.admin", remote_addr=api.clients.client_ip(call.request)
        )
        return 201, minted(settings, raw, key)

    @api.route("POST", "/v1/admin/minting", auth=False)
    async def toggle_minting(call: Call) -> Result:
        """Open or close public minting; the choice is journaled and outlives restarts."""
        require_admin(api, call)
        enabled = (await call.json()).get("enabled")
        if not isinstance(enabled, bool):
            raise ApiError(422, "invalid_field", "'enabled' must be true or false")
        world = hub.world
        now = hub.clock.now()
        await hub.commit(
            world.decide_minting(enabled, now),
            world.audit.decide(
                "minting.toggle",
                actor_key_id=None,
                subject_key_id=None,
                remote_addr=api.clients.client_ip(call.request),
                detail={"public_minting_enabled": enabled},
                now=now,
            ),
        )
        return 200, {"public_minting_enabled": api.public_minting_enabled}

    async def set_paused(call: Call, identifier: str, paused: bool) -> Result:
        require_admin(api, call)
        actor = hub.channel_actor(identifier, None)  # id or alias, any access
        state = await actor.call(actor.cmd_pause, paused, api.clients.client_ip(call.request))
        return 200, channel_view(state.config, hub.world)

    @api.route("POST", "/v1/admin/channels/<identifier>/pause", auth=False)
    async def pause(call: Call, identifier: str) -> Result:
        """Stop posts to the channel (503 ``channel_paused``); everything else still works."""
        return await set_paused(call, identifier, True)

    @api.route("POST", "/v1/admin/channels/<identifier>/resume", auth=False)
    async def resume(call: Call, identifier: str) -> Result:
        return await set_paused(call, identifier, False)
