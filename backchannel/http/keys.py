"""Routes for API keys (contract §2.3), scopes (§3.10) included."""

from __future__ import annotations

from typing import Any

from backchannel.config import Settings
from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord
from backchannel.core.scopes import decide_set_scopes
from backchannel.http.api import Api, Call, Result


def minted(settings: Settings, raw: str, key: KeyRecord) -> dict[str, Any]:
    """The 201 body of a mint, public or by the operator."""
    return {
        "key": raw,
        "key_id": key.key_id,
        "expires_at": None,
        "agent_label": key.label,
        "rate_limit": settings.rate_limit,
        "rate_limit_window_seconds": settings.rate_limit_window,
    }


def mint_label(body: dict[str, Any]) -> str:
    """``agent_label``: a non-empty string after trimming, truncated to 128 characters."""
    label = body.get("agent_label")
    if not isinstance(label, str) or not label.strip():
        raise ApiError(422, "missing_field", "'agent_label' is required")
    return label.strip()[:128]


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
        label = mint_label(await call.json())
        raw, key = await hub.mint_key(label, remote_addr=api.clients.client_ip(call.request))
        return 201, minted(settings, raw, key)

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
        await hub.revoke_key(key, api.clients.client_ip(call.request))
        api.forget_key(key)
        return 200, {"key_id": key.key_id, "revoked": True}

    @api.route("PUT", "/v1/keys/me/scopes")
    async def set_scopes(call: Call) -> Result:
        """Narrow (or, for an unrestricted key, choose) the calling key's scopes."""
        key = call.auth
        body = await call.json()
        await hub.commit(decide_set_scopes(key, body.get("scopes"), hub.clock.now()))
        return 200, {"key_id": key.key_id, "scopes": key.scopes}
