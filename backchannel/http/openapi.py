"""The OpenAPI 3.1 document, generated from the route table (contract §2.12).

What cannot drift from the code comes from the code: every path and method
is read from the API's router, a ``{name}`` path parameter from each
``<name>`` of its pattern, the security requirement from whether the route
authenticates, the optional ``Idempotency-Key`` header from whether it
honours one, each error's status from the error registry
(:data:`backchannel.agent_docs.ERRORS`), and the limits in the request
schemas from the live settings. What only a person can say (a summary, the
request and answer shapes, which errors a route can meet) comes from
:mod:`backchannel.http.route_docs`, keyed by ``(method, pattern)``; a test
fails when a served route has no entry there or an entry names a route
that is not served.

Routes served by Quart (pages, documents) are meta routes and are left out,
as upstream leaves them out.
"""

from __future__ import annotations

import re
from typing import Any

from backchannel.agent_docs import ERRORS
from backchannel.config import Settings
from backchannel.http.route_docs import COMPONENTS, Doc, route_docs

_PARAM = re.compile(r"<([a-z_]+)>")

KEY_ERRORS = ("unauthorized", "rate_limit_exceeded")
BODY_ERRORS = ("invalid_json", "invalid_json_shape", "body_too_large")
IDEMPOTENCY_ERRORS = ("idempotency_key_reused", "invalid_idempotency_key")
META_ROUTES = frozenset(
    {
        ("GET", "/health"),
        ("GET", "/metrics"),
        ("GET", "/status"),
        ("GET", "/status.html"),
        ("GET", "/account/usage"),
    }
)


def openapi_path(pattern: str) -> str:
    """``/v1/channels/<identifier>`` as ``/v1/channels/{identifier}``."""
    return _PARAM.sub(r"{\1}", pattern)


Route = tuple[str, str, bool, bool, str | None]


def build_document(routes: list[Route], settings: Settings, base_url: str) -> dict[str, Any]:
    """The whole document for ``routes``: ``(method, pattern, auth, mutating, scope)``.

    Raises:
        KeyError: a route has no entry in ``route_docs`` (a test prevents it).
    """
    docs = route_docs(settings)
    paths: dict[str, dict[str, Any]] = {}
    for method, pattern, auth, mutating, scope in sorted(routes, key=lambda r: (r[1], r[0])):
        if (method, pattern) in META_ROUTES:
            continue
        doc = docs[(method, pattern)]
        paths.setdefault(openapi_path(pattern), {})[method.lower()] = _operation(
            method, pattern, auth, mutating, scope, doc
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Backchannel API",
            "version": "1",
            "description": (
                "Agents that share no process hand work to each other: claimable channels "
                "(first claim wins, leases with heartbeats), broadcast channels, long-poll, "
                "idempotent writes. Every answered write is durable."
            ),
            "x-onboarding-url": f"{base_url}/llms.txt",
        },
        "servers": [{"url": base_url, "description": "Production"}],
        "x-ai-agent-hints": [
            "Mint a key with POST /v1/keys and send it as X-API-Key on every other call.",
            "Send an Idempotency-Key on writes you may retry; a retry replays the answer.",
            "Long-poll with ?wait=<seconds> instead of polling in a loop.",
            "A 409 already_claimed means another agent has the task: take the next one.",
        ],
        "x-example-agent-prompt": (
            f"You coordinate with other agents through Backchannel at {base_url}. "
            f"Read {base_url}/llms.txt first, then follow it."
        ),
        "paths": paths,
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {
                "ApiKeyAuth": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "AdminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"},
            },
        },
    }


def _operation(
    method: str, pattern: str, auth: bool, mutating: bool, scope: str | None, doc: Doc
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "tags": [doc.tag],
    }
    if doc.deprecated:
        operation["deprecated"] = True
    if scope is not None:
        operation["x-required-scope"] = scope
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _PARAM.findall(pattern)
    ]
    parameters += doc.query
    if mutating:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Replays the first successful answer for 24 h.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if doc.body is not None:
        operation["requestBody"] = {
            "required": doc.body_required,
            "content": {"application/json": {"schema": doc.body}},
        }
    if doc.admin:
        operation["security"] = [{"AdminToken": []}]
    elif auth:
        operation["security"] = [{"ApiKeyAuth": []}]
    else:
        operation["security"] = []
    codes = list(doc.errors)
    if auth:
        codes += KEY_ERRORS
    if scope is not None:
        codes.append("insufficient_scope")
    if method != "GET":
        codes += BODY_ERRORS
    if mutating and auth:
        codes += IDEMPOTENCY_ERRORS
    responses: dict[str, Any] = {str(status): _success(doc) for status in (doc.status, *doc.also)}
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERRORS[code][0], []).append(code)
    for status, names in sorted(by_status.items()):
        responses[str(status)] = {
            "description": ", ".join(names),
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [{"$ref": "#/components/schemas/Error"}],
                        "properties": {"error": {"enum": names}},
                    }
                }
            },
        }
    operation["responses"] = responses
    return operation


def _success(doc: Doc) -> dict[str, Any]:
    if doc.answer is None:
        return {"description": doc.summary}
    return {"description": doc.summary, "content": {doc.media: {"schema": doc.answer}}}
