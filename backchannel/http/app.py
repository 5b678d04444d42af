"""The quart-trio application: routes plus the handlers that keep every
answer in our envelope (stack-notes pitfall 5: Quart's own error pages are
HTML, and a known path with the wrong method must be 404 ``not_found``)."""

from __future__ import annotations

import uuid

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from backchannel import __version__, agent_docs
from backchannel.core.errors import ApiError
from backchannel.http import actors, channels, keys, messages, tasks
from backchannel.http.api import DRAIN_FACTOR, Api, Call, Result, body_too_large
from backchannel.runtime.hub import Hub

_CORS = {
    "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, X-API-Key, Idempotency-Key, X-Admin-Token",
    "Access-Control-Max-Age": "86400",
}


def create_app(hub: Hub) -> QuartTrio:
    """Build the app around a running :class:`Hub`."""
    settings = hub.settings
    app = QuartTrio(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes * DRAIN_FACTOR
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["JSONIFY_PRETTYPRINT_REGULAR"] = False
    api = Api(hub, settings)
    app.extensions["backchannel"] = api

    keys.register(app, api)
    channels.register(app, api)
    messages.register(app, api)
    actors.register(app, api)
    tasks.register(app, api)

    @app.route("/health", methods=["GET"])
    @api.endpoint(auth=False)
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
            "status_url": f"{api.base_url()}/docs/reliability.md",
            "max_content_bytes": settings.max_message_bytes,
        }

    @app.route("/llms.txt", methods=["GET"])
    async def llms() -> Response:
        return _text(api, agent_docs.llms_txt(api.base_url()), "text/plain; charset=utf-8")

    @app.route("/docs/errors.md", methods=["GET"])
    async def errors_doc() -> Response:
        return _text(api, agent_docs.errors_md(), "text/markdown; charset=utf-8")

    @app.route("/<path:anything>", methods=["OPTIONS"])
    async def preflight(anything: str) -> Response:
        adapter = app.url_map.bind("localhost")
        path = "/" + anything
        known = any(
            _matches(adapter, path, method) for method in ("GET", "POST", "PATCH", "DELETE", "PUT")
        )
        request_id = str(uuid.uuid4())
        if not known:
            return _not_found(api, request_id)
        headers = api.headers(request_id, 204)
        headers.update(_CORS)
        return Response(b"", status=204, headers=headers)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        request_id = str(uuid.uuid4())
        if isinstance(exc, NotFound | MethodNotAllowed):
            return _not_found(api, request_id)
        if exc.code == 413:
            error = body_too_large(settings.max_body_bytes)
        else:
            status = exc.code or 400
            error = ApiError(status, "bad_request", exc.description or "Bad request")
        return api.error_response(request_id, error)

    return app


def _matches(adapter: object, path: str, method: str) -> bool:
    try:
        adapter.match(path, method=method)  # type: ignore[attr-defined]
    except HTTPException:
        return False
    return True


def _text(api: Api, text: str, content_type: str) -> Response:
    headers = api.headers(str(uuid.uuid4()), 200)
    return Response(text.encode(), status=200, headers=headers, content_type=content_type)


def _not_found(api: Api, request_id: str) -> Response:
    """The route-miss body is plain ``{error, message}`` (contract §3.1)."""
    message = f"No route for {request.method} {request.path}"
    return api.json_response(request_id, 404, {"error": "not_found", "message": message})
