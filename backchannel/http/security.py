"""``GET /v1/security/audit``: the calling key's security events (contract §2.11)."""

from __future__ import annotations

from backchannel.core.audit import AUDIT_MAX_LIMIT
from backchannel.http.api import Api, Call, Result
from backchannel.http.views import security_event_view


def register(api: Api) -> None:
    audit = api.hub.world.audit

    @api.route("GET", "/v1/security/audit")
    async def security_audit(call: Call) -> Result:
        """Events whose actor or subject is the caller's key, newest first.

        ``limit`` is 1–500 (default 100): out of range is clamped, an
        unparsable value is ignored (as upstream).
        """
        raw = (call.query.get("limit") or "").strip()
        limit = 100
        if raw.lstrip("+-").isdigit() and len(raw) < 12:
            limit = min(AUDIT_MAX_LIMIT, max(1, int(raw)))
        found = audit.for_key(call.auth.key_id, limit)
        return 200, {"data": [security_event_view(e) for e in found], "count": len(found)}
