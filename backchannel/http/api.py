"""The request pipeline every API route shares, served as a raw ASGI lane.

``Api.route`` registers ``fn(call, **path) -> (status, payload[, headers])``
for one method and path. A request the lane routes goes, in order: a request
id is made; the API key is authenticated and the per-key limiter counted
(Key routes); an ``Idempotency-Key`` is replayed or reserved (mutating Key
routes); the route runs; its result is rendered as compact JSON with the
common headers of contract §3.15, pre-encoded. Every :class:`ApiError`
leaves in the standard envelope, so no route can answer an expected failure
with HTML or a 500.

Why a lane in front of Quart: measured on this machine, building a Quart
request and response (werkzeug headers, two tasks and a nursery per request
in quart-trio) cost as much CPU per post as all of our own work, and made
answering 10,000 woken long-polls take ~8 s. The lane wraps
``app.asgi_app`` (Quart's documented place for ASGI middleware); whatever it
does not route (docs, CORS preflight, unknown paths) falls through to Quart.

Idempotency (contract §0.5): the first 2xx answer to ``(key, Idempotency-Key)``
is stored durably with the write it answers and replayed for 24 h. The same
key on another method or path is 422 ``idempotency_key_reused``. A request
that arrives while the first is still running waits for it and replays its
answer, so a write is never executed twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import trio

from backchannel.config import Settings
from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord
from backchannel.core.scopes import require_scope
from backchannel.http.accesslog import AccessLog
from backchannel.http.call import JSON as _JSON
from backchannel.http.call import Call as Call
from backchannel.http.call import Headers as Headers
from backchannel.http.call import Page as Page
from backchannel.http.call import RawJSON as RawJSON
from backchannel.http.call import Reply as Reply
from backchannel.http.call import Result as Result
from backchannel.http.call import Route as Route
from backchannel.http.call import Stream as Stream
from backchannel.http.call import dumps as dumps
from backchannel.http.call import encoded as _encoded
from backchannel.http.clients import ClientView
from backchannel.http.hypercorn_answer import STREAM_KEY
from backchannel.http.hypercorn_tuning import streaming
from backchannel.http.openapi import build_document
from backchannel.http.ratelimit import SlidingWindow
from backchannel.http.request import Disconnected, Request
from backchannel.http.router import Router
from backchannel.runtime.durable import deferred_durability
from backchannel.runtime.hub import Hub
from backchannel.runtime.journal import JournalFailed

log = logging.getLogger(__name__)
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)
_LINK = '</openapi.json>; rel="service-desc", </.well-known/ai-manifest.json>; rel="ai-manifest"'
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def _has_body(scope: Any) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _extra(result: Result) -> Headers:
    """A route's extra headers, encoded (a fresh list: the caller adds to it)."""
    if len(result) != 3:
        return []
    extra = result[2]
    return list(extra) if isinstance(extra, list) else _encoded(extra)


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI ``receive`` whose first message is the whole ``body``."""
    first: list[Any] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Any:
        if first:
            return first.pop()
        return await receive()

    return replay


class _Endpoint:
    __slots__ = ("auth", "fn", "mutating", "scope", "template", "throttled")

    def __init__(
        self,
        fn: Route,
        auth: bool,
        mutating: bool,
        template: str,
        scope: str | None = None,
        throttled: bool = True,
    ) -> None:
        self.fn = fn
        self.auth = auth
        self.throttled = throttled
        self.mutating = mutating
        self.template = template  # the metrics' ``path`` label, e.g. /v1/channels/{identifier}
        self.scope = scope


class Api:
    """Shared state of the HTTP skin: the hub, settings, limiters, caches, routes."""

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self.router: Router[_Endpoint] = Router()
        self.key_limiter = SlidingWindow(settings.rate_limit, settings.rate_limit_window)
        self.mint_limiter = SlidingWindow(settings.key_mint_limit, settings.key_mint_window)
        self.clients = ClientView(settings)
        self.metrics = hub.metrics
        self.access_log = (
            AccessLog(settings.log_format) if AccessLog.enabled(settings.access_log) else None
        )
        self._auth_cache: dict[str, KeyRecord] = {}
        self._in_flight: dict[tuple[str, str], trio.Event] = {}
        self._openapi: dict[str, bytes] = {}
        self._static_headers = _encoded(
            {
                "X-RateLimit-Limit": str(settings.rate_limit),
                "X-RateLimit-Window": str(settings.rate_limit_window),
                "Access-Control-Allow-Origin": "*",
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": _CSP,
            }
        )
        self._link = (b"link", _LINK.encode())
        self._retry_after = (b"retry-after", str(settings.rate_limit_window).encode())

    @property
    def public_minting_enabled(self) -> bool:
        """The operator's last ``POST /v1/admin/minting`` choice, else the setting."""
        chosen = self.hub.world.public_minting
        return self.settings.public_minting_enabled if chosen is None else chosen

    # -- pieces -----------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        """The advertised base URL for this request (contract §3.18)."""
        return self.clients.base_url(request)

    def observe(
        self, method: str, template: str, status: int, started: float, request_id: str
    ) -> None:
        """Count one answered request and log its line (one per request, at info)."""
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.observe_request(method, template, status, seconds)
        if self.access_log is not None:
            self.access_log.record(method, template, status, seconds, request_id)

    def authenticate(self, raw: str | None) -> KeyRecord:
        if raw is not None:
            cached = self._auth_cache.get(raw)
            if cached is not None and cached.active:
                return cached
        record = self.hub.world.authenticate(raw)
        assert raw is not None
        if len(self._auth_cache) > 100_000:
            self._auth_cache.clear()
        self._auth_cache[raw] = record
        return record

    def admit(self, raw: str | None) -> tuple[KeyRecord, int]:
        """Authenticate ``raw`` and count one request against its per-key limit.

        Returns the key and the requests left in its window.

        Raises:
            ApiError: 401 ``unauthorized`` / 410 ``key_expired``; 429
                ``rate_limit_exceeded`` (the request is counted either way).
        """
        key = self.authenticate(raw)
        allowed, left = self.key_limiter.hit(key.key_id)
        if not allowed:
            window = self.settings.rate_limit_window
            raise ApiError(
                429,
                "rate_limit_exceeded",
                f"Rate limit exceeded: {self.settings.rate_limit} requests per {window}s. "
                "The public instance is a sandbox — self-host for higher limits.",
                retry_after=window,
            )
        return key, left

    def forget_key(self, key: KeyRecord) -> None:
        for raw in [r for r, k in self._auth_cache.items() if k is key]:
            del self._auth_cache[raw]

    def headers(self, request: Request, request_id: str, status: int) -> Headers:
        """The common headers of contract §3.15 for one answer."""
        headers = self._static_headers.copy()
        hex_id = request_id.replace("-", "").encode()
        headers.append((b"x-request-id", request_id.encode()))
        trace = request.header(b"traceparent") or b"00-%b-%b-01" % (hex_id, hex_id[:16])
        headers.append((b"traceparent", trace))
        if status < 400:
            headers.append(self._link)
        if status == 429:
            headers.append(self._retry_after)
        proto = request.header(b"x-forwarded-proto")  # from any peer, as §3.15 says
        forwarded_https = proto is not None and proto.split(b",")[0].strip() == b"https"
        if forwarded_https or request.scheme == "https":
            headers.append((b"strict-transport-security", b"max-age=31536000; includeSubDomains"))
        if request.must_close:
            headers.append((b"connection", b"close"))
        return headers

    def error_reply(self, request: Request, request_id: str, exc: ApiError) -> Reply:
        slug = exc.code.replace("_", "-")
        payload: dict[str, Any] = {"error": exc.code, "message": exc.message}
        payload.update(exc.details)
        payload["request_id"] = request_id
        payload["documentation_url"] = f"{self.base_url(request)}/docs/errors.md#{slug}"
        return Reply(exc.status, dumps(payload), [])

    async def send(
        self,
        send: Any,
        request: Request,
        request_id: str,
        reply: Reply,
    ) -> None:
        """Write ``reply`` with the common headers: one start and one body event."""
        headers = self.headers(request, request_id, reply.status)
        headers.append((b"content-type", reply.content_type))
        headers.append((b"content-length", b"%d" % len(reply.body)))
        headers.extend(reply.extra)
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def send_stream(self, send: Any, request: Request, request_id: str, reply: Reply) -> None:
        """Write a :class:`Stream` reply: the start goes out with its first chunk, never held."""
        assert reply.stream is not None
        headers = self.headers(request, request_id, reply.status)
        headers.append((b"content-type", reply.content_type))
        headers.append((b"cache-control", b"no-cache"))
        headers.append((b"x-accel-buffering", b"no"))  # proxies: do not buffer the stream
        headers.extend(reply.extra)
        start = {"type": "http.response.start", "status": reply.status, "headers": headers}
        start[STREAM_KEY] = True
        await send(start)

        async def chunk(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        streaming(send, True)  # the client may stay silent past read_timeout
        try:
            await reply.stream.run(chunk)
        finally:
            streaming(send, False)
            with contextlib.suppress(Exception), trio.CancelScope(shield=True):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    def openapi(self, base_url: str) -> bytes:
        """The OpenAPI document of every routed operation, as served (indented JSON)."""
        cached = self._openapi.get(base_url)
        if cached is None:
            routes = [(m, p, e.auth, e.mutating, e.scope) for m, p, e in self.router.entries()]
            document = build_document(routes, self.settings, base_url)
            cached = json.dumps(document, indent=2, ensure_ascii=False).encode()
            if len(self._openapi) > 16:
                self._openapi.clear()
            self._openapi[base_url] = cached
        return cached

    # -- registration and the ASGI lane -------------------------------------------

    def route(
        self,
        method: str,
        pattern: str,
        *,
        auth: bool = True,
        mutating: bool = False,
        scope: str | None = None,
        throttled: bool = True,
    ) -> Callable[[Route], Route]:
        """Register ``fn(call, **path) -> (status, payload[, headers])``.

        Args:
            auth: require ``X-API-Key`` and count the per-key limiter.
            mutating: honour ``Idempotency-Key`` (POST/PATCH/DELETE Key routes).
            scope: the scope a scoped key must hold (contract §3.10), checked
                after the limiter and before any idempotent replay, so a
                replay never bypasses it.
            throttled: False for a route the per-key limiter does not count
                (a stream: long-lived, bounded by its own cap instead).
        """

        def register(fn: Route) -> Route:
            template = pattern.replace("<", "{").replace(">", "}")
            endpoint = _Endpoint(fn, auth, mutating, template, scope, throttled)
            self.router.add(method, pattern, endpoint)
            return fn

        return register

    def lane(self, fallback: ASGIApp) -> ASGIApp:
        """The ASGI app that serves routed requests and hands the rest to ``fallback``."""
        match = self.router.match

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await fallback(scope, receive, send)
                return
            found = match(scope["method"], scope["path"])
            if found is not None:
                await self._serve(found[0], found[1], Request(scope, receive, send), send)
                return
            await self._serve_fallback(fallback, scope, receive, send)

        return asgi

    async def _serve_fallback(self, fallback: ASGIApp, scope: Any, receive: Any, send: Any) -> None:
        """Hand a request the lane does not route to Quart, counting and logging it."""
        started = time.perf_counter()
        seen: list[Any] = [0, "-"]

        async def watched_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                seen[0] = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-request-id":
                        seen[1] = value.decode("latin-1")
            await send(message)

        try:
            if _has_body(scope):
                request = Request(scope, receive, watched_send)
                receive = await self._read_ahead(request, watched_send)
                if receive is None:
                    return
            await fallback(scope, receive, watched_send)
        finally:
            status = seen[0]
            if status:
                path = scope["path"]
                template = self.router.template(path) or ("other" if status == 404 else path)
                self.observe(scope["method"], template, status, started, seen[1])

    async def invoke(
        self,
        method: str,
        path: str,
        *,
        api_key: str | None,
        body: dict[str, Any] | None = None,
        query: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        client: tuple[str, int] | None = None,
    ) -> tuple[int, Any]:
        """Run one API request in-process, through the lane's own pipeline.

        For callers inside the server (the MCP endpoint): no socket and no
        HTTP parsing, but the same route, authentication, per-key rate limit,
        ``Idempotency-Key`` handling and error envelope as the same request
        over HTTP, so the two cannot drift apart. A long-poll parks until it
        is woken, its wait ends or the caller is cancelled.

        Returns:
            The status and the decoded JSON body (None when empty). Error
            answers are returned too, as their envelope, not raised.
        """
        raw = b"" if body is None else dumps(body)
        headers: Headers = [(b"content-length", b"%d" % len(raw))]
        if api_key is not None:
            headers.append((b"x-api-key", api_key.encode("latin-1", "replace")))
        if idempotency_key is not None:
            headers.append((b"idempotency-key", idempotency_key.encode("latin-1", "replace")))
        pairs = {k: v for k, v in (query or {}).items() if v is not None}
        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": urlencode(pairs).encode(),
            "headers": headers,
            "client": client,
            "scheme": "http",
        }
        sent: list[bool] = []

        async def receive() -> dict[str, Any]:
            if not sent:
                sent.append(True)
                return {"type": "http.request", "body": raw, "more_body": False}
            await trio.sleep_forever()  # the caller never leaves mid-request
            raise AssertionError("unreachable")

        request = Request(scope, receive)
        call = Call(request, str(uuid.uuid4()), self.settings.max_body_bytes)
        found = self.router.match(method, path)
        if found is None:
            missing = ApiError(404, "not_found", f"No route for {method} {path}")
            reply = self.error_reply(request, call.request_id, missing)
        else:
            reply = await self._respond(found[0], found[1], call)
        return reply.status, json.loads(reply.body) if reply.body else None

    async def _read_ahead(self, request: Request, send: Any) -> Any:
        """Read the body of a request Quart will serve, before Quart answers it.

        Quart answers a 404 or a preflight without reading the body; a body
        still arriving after the answer is what stalled keep-alive
        connections (``hypercorn_recycle``). Returns a ``receive`` that
        replays the body, or None when the request was answered here (413)
        or its client left.
        """
        try:
            body = await request.read_body(self.settings.max_body_bytes)
        except Disconnected:
            return None
        except ApiError as exc:
            request_id = str(uuid.uuid4())
            await self.send(send, request, request_id, self.error_reply(request, request_id, exc))
            return None
        return _replay(body, request.receive)

    async def _serve(
        self, endpoint: _Endpoint, path: dict[str, str], request: Request, send: Any
    ) -> None:
        started = time.perf_counter()
        call = Call(request, str(uuid.uuid4()), self.settings.max_body_bytes)
        try:
            reply = await self._respond(endpoint, path, call)
            if request.method in _BODY_METHODS and not request.body_done:
                # Answering before the body is read stalls the next request on
                # this keep-alive connection (hypercorn cannot recycle an h11
                # cycle whose request is still arriving): drain it first.
                with contextlib.suppress(ApiError):
                    await call.raw_body()
        except Disconnected:
            return  # nobody to answer
        if reply.stream is not None:
            await self.send_stream(send, request, call.request_id, reply)
        else:
            await self.send(send, request, call.request_id, reply)
        self.observe(request.method, endpoint.template, reply.status, started, call.request_id)

    async def _respond(self, endpoint: _Endpoint, path: dict[str, str], call: Call) -> Reply:
        request, request_id = call.request, call.request_id
        try:
            return await self._run(endpoint, path, call)
        except ApiError as exc:
            return self.error_reply(request, request_id, exc)
        except JournalFailed:
            error = ApiError(503, "unavailable", "Writes are unavailable: storage failed")
            return self.error_reply(request, request_id, error)
        except Disconnected:
            raise
        except Exception:
            log.exception("unexpected error in %s (request %s)", endpoint.fn.__name__, request_id)
            error = ApiError(500, "internal_server_error", "Internal server error")
            return self.error_reply(request, request_id, error)

    async def _run(self, endpoint: _Endpoint, path: dict[str, str], call: Call) -> Reply:
        key: KeyRecord | None = None
        remaining = b"0"
        if endpoint.auth and not endpoint.throttled:
            key = self.authenticate(call.request.text_header(b"x-api-key"))
        elif endpoint.auth:
            key, left = self.admit(call.request.text_header(b"x-api-key"))
            remaining = b"%d" % left
        if key is not None and endpoint.scope is not None:
            require_scope(key, endpoint.scope)
        call.key = key
        idem = call.request.text_header(b"idempotency-key") if endpoint.mutating else None
        if idem is None or key is None:
            return self._render(await endpoint.fn(call, **path), remaining)
        return await self._idempotent(endpoint.fn, path, call, key, idem, remaining)

    @staticmethod
    def _render(result: Result, remaining: bytes) -> Reply:
        status, payload = result[0], result[1]
        content_type = _JSON
        if isinstance(payload, RawJSON):
            body = payload.data
        elif isinstance(payload, Page):
            body, content_type = payload.data, payload.content_type
        elif isinstance(payload, Stream):
            return Reply(status, b"", _extra(result), Stream.content_type, payload)
        else:
            body = b"" if status == 204 else dumps(payload)
        extra = _extra(result)
        extra.append((b"x-ratelimit-remaining", remaining))
        return Reply(status, body, extra, content_type)

    async def _idempotent(
        self,
        fn: Route,
        path: dict[str, str],
        call: Call,
        key: KeyRecord,
        idem: str,
        remaining: bytes,
    ) -> Reply:
        idem = idem.strip()
        if not idem or len(idem) > self.settings.max_idempotency_key_chars:
            raise ApiError(
                422,
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to "
                f"{self.settings.max_idempotency_key_chars} characters",
            )
        slot = (key.key_id, idem)
        while (event := self._in_flight.get(slot)) is not None:
            await event.wait()
        hub = self.hub
        method, url_path = call.request.method, call.request.path
        ttl = self.settings.idempotency_ttl_seconds * 1_000_000
        entry = hub.world.idempotent_entry(key.key_id, idem, hub.clock.now(), ttl)
        marks = _encoded({"Idempotency-Key": idem, "X-Idempotency-Source": "client"})
        if entry is not None:
            if entry.method != method or entry.path != url_path:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was already used for another request: "
                    f"{entry.method} {entry.path}",
                )
            return Reply(entry.status, entry.body, [*marks, (b"x-idempotent-replay", b"true")])
        done = self._in_flight[slot] = trio.Event()
        try:
            with deferred_durability() as pending:
                try:
                    result = await fn(call, **path)
                except BaseException:
                    if pending:  # a refused request may still have changed nothing durable
                        with trio.CancelScope(shield=True):
                            await hub.journal.wait_durable(max(pending))
                    raise
            reply = self._render(result, remaining)
            if reply.status < 300:
                # the reply record joins the write's group commit: both or neither
                pending.append(
                    hub.record_idempotent(
                        key.key_id, idem, method, url_path, reply.status, reply.body
                    )
                )
            if pending:
                await hub.journal.wait_durable(max(pending))
            reply.extra.extend(marks)
            return reply
        finally:
            del self._in_flight[slot]
            done.set()
