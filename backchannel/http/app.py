"""The quart-trio application: the API lane in front, Quart behind it.

The JSON API runs in :meth:`Api.lane`, installed as Quart's ``asgi_app``
middleware. Quart serves what the lane does not route: the agent docs, CORS
preflight, and every unknown path or method, with handlers that keep each
answer in our envelope (stack-notes pitfall 5: Quart's own error pages are
HTML, and a known path with the wrong method must be 404 ``not_found``)."""

from __future__ import annotations

import uuid

import trio
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from backchannel import __version__
from backchannel.core.errors import ApiError
from backchannel.http import (
    access_requests,
    actors,
    admin,
    channel_admin,
    channels,
    console,
    delivery,
    invitations,
    keys,
    members,
    messages,
    observability,
    pages,
    security,
    sessions,
    streams,
    tasks,
)
from backchannel.http.api import Api, Call, Reply, Result
from backchannel.http.mcp.mount import McpMount
from backchannel.http.replies import current as _current
from backchannel.http.replies import not_found as _not_found
from backchannel.http.replies import respond as _response
from backchannel.http.request import DRAIN_FACTOR, body_too_large
from backchannel.http.views import message_view
from backchannel.runtime.hub import Hub

_CORS = [
    (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type, X-API-Key, Idempotency-Key, X-Admin-Token"),
    (b"access-control-max-age", b"86400"),
]


def create_app(hub: Hub) -> QuartTrio:
    """Build the app around a running :class:`Hub`."""
    settings = hub.settings
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes * DRAIN_FACTOR
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["JSONIFY_PRETTYPRINT_REGULAR"] = False
    api = Api(hub, settings)
    hub.render_message = message_view  # webhook bodies show the message as the API does
    app.extensions["backchannel"] = api

    for routes in (
        keys,
        channels,
        messages,
        streams,
        actors,
        tasks,
        channel_admin,
        members,
        invitations,
        access_requests,
        sessions,
        admin,
        security,
        delivery,
        observability,
    ):
        routes.register(api)

    @api.route("GET", "/health", auth=False)
    async def health(call: Call) -> Result:
        started = trio.current_time()
        await trio.lowlevel.checkpoint()
        journal = hub.journal.statistics()
        return 200, {
            "status": "ok" if not journal.failed else "degraded",
            "db_latency_ms": round((trio.current_time() - started) * 1000, 3),
            "api_version": "1.0",
            "version": __version__,
            "instance_kind": settings.instance_kind,
            "public_minting_enabled": api.public_minting_enabled,
            "status_url": f"{api.base_url(call.request)}/docs/reliability.md",
            "max_content_bytes": settings.max_message_bytes,
        }

    @app.route("/openapi.json", methods=["GET"])
    @app.route("/.well-known/openapi.json", methods=["GET"])
    async def openapi() -> Response:
        document = api.openapi(api.base_url(_current()))
        return _response(api, Reply(200, document, []), None)

    pages.register(app, api)
    console.register(app, api)

    @app.route("/", methods=["OPTIONS"], defaults={"anything": ""})
    @app.route("/<path:anything>", methods=["OPTIONS"])
    async def preflight(anything: str) -> Response:
        path = "/" + anything
        if not (api.router.knows(path) or path in _QUART_PATHS):
            return _not_found(api)
        return _response(api, Reply(204, b"", _CORS), None)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        if isinstance(exc, NotFound | MethodNotAllowed):
            return _not_found(api)
        if exc.code == 413:
            error = body_too_large(settings.max_body_bytes)
        else:
            status = exc.code or 400
            error = ApiError(status, "bad_request", exc.description or "Bad request")
        request_id = str(uuid.uuid4())
        return _response(api, api.error_reply(_current(), request_id, error), request_id)

    mcp = McpMount(api)
    app.extensions["backchannel.mcp"] = mcp
    # /mcp is no API route, so the lane hands it on: the hot path pays nothing for it
    app.asgi_app = api.lane(mcp.mount(app.asgi_app))  # type: ignore[method-assign,assignment]
    return app


_QUART_PATHS = pages.PATHS | console.PATHS | {"/openapi.json", "/.well-known/openapi.json"}
