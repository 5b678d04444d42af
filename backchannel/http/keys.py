"""Routes for API keys (contract §2.3)."""

from __future__ import annotations

from backchannel.core.errors import ApiError
from backchannel.http.api import Api, Call, Result


def register(api: Api) -> None:
    settings = api.settings
    hub = api.hub

    @api.route("POST", "/v1/keys", auth=False)
    async def mint_key(call: Call) -> Result:
        if not api.public_minting_enabled:
            raise ApiError(403, "minting_closed", "Public key minting is disabled on this instance")
        allowed, _ = api.mint_limiter.hit(api.clients.client_ip(call.request))
        if not allowed:
            raise ApiError(
                429,
                "rate_limit_exceeded",
                "Key minting rate limit exceeded for this address",
                retry_after=settings.key_mint_window,
            )
        body = await call.json()
        label = body.get("agent_label")
        if not isinstance(label, str) or not label.strip():
            raise ApiError(422, "missing_field", "'agent_label' is required")
        label = label.strip()[:128]
        raw, key = await hub.mint_key(label)
        return 201, {
            "key": raw,
            "key_id": key.key_id,
            "expires_at": None,
            "agent_label": key.label,
            "rate_limit": settings.rate_limit,
            "rate_limit_window_seconds": settings.rate_limit_window,
        }

    @api.route("GET", "/v1/keys/me")
    async def key_me(call: Call) -> Result:
        key = call.auth
        return 200, {
            "key_id": key.key_id,
            "owner_id": key.owner_id,
            "plan": "free",
            "active": key.active,
            "scopes": key.scopes,
            "rate_limit": settings.rate_limit,
            "rate_limit_window_seconds": settings.rate_limit_window,
        }

    @api.route("DELETE", "/v1/keys/me", mutating=True)
    async def revoke_key(call: Call) -> Result:
        key = call.auth
        await hub.revoke_key(key)
        api.forget_key(key)
        return 200, {"key_id": key.key_id, "revoked": True}
