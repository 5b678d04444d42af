"""Answers built by Quart handlers, with the lane's common headers (§3.15).

Quart serves what the API lane does not route (documents, pages, CORS
preflight, unknown paths); every such answer goes through :func:`respond`,
so it carries the same headers as a lane answer, and a route miss keeps the
plain ``{error, message}`` body of contract §3.1.
"""

from __future__ import annotations

import uuid

from quart import Response, request
from werkzeug.datastructures import Headers

from backchannel.http.api import Api, Reply
from backchannel.http.api import dumps as api_dumps
from backchannel.http.request import Request


def current() -> Request:
    """The lane's view of Quart's current request."""
    return Request(request.scope, None)


def respond(
    api: Api, reply: Reply, request_id: str | None, content_type: str = "application/json"
) -> Response:
    """A Quart response with the same common headers as the lane's answers."""
    request_id = request_id or str(uuid.uuid4())
    headers = [*api.headers(current(), request_id, reply.status), *reply.extra]
    return Response(
        reply.body,
        status=reply.status,
        headers=Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]),
        content_type=content_type,
    )


def text(api: Api, body: str, content_type: str) -> Response:
    return respond(api, Reply(200, body.encode(), []), None, content_type)


def not_found(api: Api) -> Response:
    """The route-miss body is plain ``{error, message}`` (contract §3.1)."""
    message = f"No route for {request.method} {request.path}"
    body = api_dumps({"error": "not_found", "message": message})
    return respond(api, Reply(404, body, []), None)
