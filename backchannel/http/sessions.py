"""Routes for sessions: small per-key key/value documents (contract §2.8)."""

from __future__ import annotations

import json
from typing import Any

from backchannel.core import errors
from backchannel.core.errors import ApiError
from backchannel.http import fields
from backchannel.http.api import Api, Call, Result
from backchannel.http.views import session_view


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings
    book = hub.world.sessions

    def capped(state: dict[str, Any]) -> dict[str, Any]:
        size = len(json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())
        if size > settings.max_metadata_bytes:
            raise ApiError(
                422,
                "invalid_object",
                f"'state' must encode to at most {settings.max_metadata_bytes} bytes",
            )
        return state

    @api.route("GET", "/v1/sessions")
    async def list_sessions(call: Call) -> Result:
        found = book.listing(call.auth.key_id, hub.clock.now())
        return 200, {"data": [session_view(s) for s in found]}

    @api.route("POST", "/v1/sessions", mutating=True)
    async def create_session(call: Call) -> Result:
        body = await call.json()
        name = fields.required_string(body, "name", max_chars=settings.max_name_chars)
        state = capped(fields.optional_object(body, "state"))
        event = book.decide_create(call.auth.key_id, name, state, hub.clock.now())
        await hub.commit(event)
        return 201, session_view(book.sessions[event.session_id])

    @api.route("GET", "/v1/sessions/<session_id>")
    async def get_session(call: Call, session_id: str) -> Result:
        return 200, session_view(book.get(call.auth.key_id, session_id))

    @api.route("PATCH", "/v1/sessions/<session_id>", mutating=True)
    async def patch_session(call: Call, session_id: str) -> Result:
        """Shallow-merge ``state`` (or, without that key, the whole body) into the state.

        A non-object ``state`` is 422 ``invalid_object`` (upstream raised a 500).
        """
        body = await call.json()
        changes = body["state"] if "state" in body else body
        if not isinstance(changes, dict):
            raise errors.invalid_object("state")
        key_id = call.auth.key_id
        event = book.decide_patch(key_id, session_id, changes, hub.clock.now())
        capped(event.state)
        await hub.commit(event)
        return 200, session_view(book.get(key_id, session_id))

    @api.route("DELETE", "/v1/sessions/<session_id>", mutating=True)
    async def delete_session(call: Call, session_id: str) -> Result:
        await hub.commit(book.decide_delete(call.auth.key_id, session_id, hub.clock.now()))
        return 200, {"status": "deleted"}
