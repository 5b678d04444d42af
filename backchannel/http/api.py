"""The request pipeline every route shares.

``Api.endpoint`` wraps a route so that, in order: a request id is made;
the API key is authenticated and the per-key limiter counted (Key routes);
an ``Idempotency-Key`` is replayed or reserved (mutating Key routes); the
route runs; its result is rendered as compact JSON with the common headers
of contract §3.15. Every :class:`ApiError` leaves through :func:`error_response`
in the standard envelope, so no route can answer an expected failure with
HTML or a 500.

Idempotency (contract §0.5): the first 2xx answer to ``(key, Idempotency-Key)``
is stored durably with the write it answers and replayed for 24 h. The same
key on another method or path is 422 ``idempotency_key_reused``. A request
that arrives while the first is still running waits for it and replays its
answer, so a write is never executed twice.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from quart import Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from backchannel.config import Settings
from backchannel.core.errors import ApiError
from backchannel.core.records import KeyRecord
from backchannel.http.fields import parse_object
from backchannel.http.ratelimit import SlidingWindow
from backchannel.runtime.durable import deferred_durability
from backchannel.runtime.hub import Hub
from backchannel.runtime.journal import JournalFailed

log = logging.getLogger(__name__)
_BODY_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
PUBLIC_BASE_URL = "https://backchannel.oakstack.eu"
_HOST_RE = re.compile(r"^[A-Za-z0-9._-]+(:[0-9]{1,5})?$")
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'self'; form-action 'self'"
)
_LINK = '</openapi.json>; rel="service-desc", </.well-known/ai-manifest.json>; rel="ai-manifest"'
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes, the form of every response body."""
    return _dumps(value).encode()


Result = tuple[int, Any] | tuple[int, Any, dict[str, str]]


class RawJSON:
    """A payload that is already serialized JSON (shared by many responses)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


Route = Callable[..., Awaitable[Result]]


class Call:
    """What a route gets to know about its request."""

    __slots__ = ("_body", "_cap", "key", "request_id")

    def __init__(self, request_id: str, key: KeyRecord | None, cap: int) -> None:
        self.request_id = request_id
        self.key = key
        self._cap = cap
        self._body: bytes | None = None

    @property
    def body_read(self) -> bool:
        return self._body is not None

    @property
    def auth(self) -> KeyRecord:
        assert self.key is not None
        return self.key

    async def raw_body(self) -> bytes:
        if self._body is None:
            self._body = await _read_body(self._cap)
        return self._body

    async def json(self) -> dict[str, Any]:
        return parse_object(await self.raw_body())


DRAIN_FACTOR = 16  # an oversized body is read and dropped up to 16x the cap, then cut


def body_too_large(cap: int) -> ApiError:
    return ApiError(413, "body_too_large", f"Request body exceeds {cap} bytes", max_body_bytes=cap)


async def _read_body(cap: int) -> bytes:
    """The request body, streamed chunk by chunk: at most ``cap`` bytes are kept.

    An oversized body is still read to its end (and dropped) so the client,
    which writes the whole body before it reads the answer, gets the 413
    instead of a stalled upload; past ``DRAIN_FACTOR`` times the cap the
    framework refuses the rest and the connection is closed.
    """
    parts: list[bytes] = []
    size = 0
    try:
        async for chunk in request.body:
            size += len(chunk)
            if size <= cap:
                parts.append(chunk)
    except RequestEntityTooLarge:
        raise body_too_large(cap) from None
    if size > cap:
        raise body_too_large(cap)
    return b"".join(parts)


class Api:
    """Shared state of the HTTP skin: the hub, settings, limiters, caches."""

    def __init__(self, hub: Hub, settings: Settings) -> None:
        self.hub = hub
        self.settings = settings
        self.key_limiter = SlidingWindow(settings.rate_limit, settings.rate_limit_window)
        self.mint_limiter = SlidingWindow(settings.key_mint_limit, settings.key_mint_window)
        self.public_minting_enabled = settings.public_minting_enabled
        self._auth_cache: dict[str, KeyRecord] = {}
        self._in_flight: dict[tuple[str, str], trio.Event] = {}
        self._static_headers = {
            "X-RateLimit-Limit": str(settings.rate_limit),
            "X-RateLimit-Window": str(settings.rate_limit_window),
            "Access-Control-Allow-Origin": "*",
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": _CSP,
        }

    # -- pieces -----------------------------------------------------------------

    def base_url(self) -> str:
        if self.settings.base_url:
            return self.settings.base_url.rstrip("/")
        host = request.headers.get("Host", "")
        if host and _HOST_RE.match(host):
            return f"{request.scheme}://{host}"
        return PUBLIC_BASE_URL

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

    def forget_key(self, key: KeyRecord) -> None:
        for raw in [r for r, k in self._auth_cache.items() if k is key]:
            del self._auth_cache[raw]

    def headers(self, request_id: str, status: int) -> dict[str, str]:
        headers = dict(self._static_headers)
        headers["X-Request-Id"] = request_id
        headers["traceparent"] = request.headers.get("traceparent") or (
            f"00-{request_id.replace('-', '')}-{request_id.replace('-', '')[:16]}-01"
        )
        if status < 400:
            headers["Link"] = _LINK
        if status == 429:
            headers["Retry-After"] = str(self.settings.rate_limit_window)
        if request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip() == "https":
            headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        return headers

    def error_response(self, request_id: str, exc: ApiError) -> Response:
        slug = exc.code.replace("_", "-")
        payload: dict[str, Any] = {"error": exc.code, "message": exc.message}
        payload.update(exc.details)
        payload["request_id"] = request_id
        payload["documentation_url"] = f"{self.base_url()}/docs/errors.md#{slug}"
        return Response(
            _dumps(payload),
            status=exc.status,
            headers=self.headers(request_id, exc.status),
            content_type="application/json",
        )

    def json_response(
        self, request_id: str, status: int, payload: Any, extra: dict[str, str] | None = None
    ) -> Response:
        if isinstance(payload, RawJSON):
            body = payload.data
        else:
            body = b"" if status == 204 else _dumps(payload).encode()
        headers = self.headers(request_id, status)
        if extra:
            headers.update(extra)
        return Response(body, status=status, headers=headers, content_type="application/json")

    # -- the decorator ------------------------------------------------------------

    def endpoint(
        self, *, auth: bool = True, mutating: bool = False
    ) -> Callable[[Route], Callable[..., Awaitable[Response]]]:
        """Wrap a route ``fn(call, **path) -> (status, payload[, headers])``.

        Args:
            auth: require ``X-API-Key`` and count the per-key limiter.
            mutating: honour ``Idempotency-Key`` (POST/PATCH/DELETE Key routes).
        """

        def decorate(fn: Route) -> Callable[..., Awaitable[Response]]:
            @functools.wraps(fn)
            async def view(**path: Any) -> Response:
                call = Call(str(uuid.uuid4()), None, self.settings.max_body_bytes)
                response = await self._respond(fn, path, call, auth, mutating)
                if request.method in _BODY_METHODS and not call.body_read:
                    # Answering before the body is read stalls the next request on
                    # this keep-alive connection (hypercorn cannot recycle an h11
                    # cycle whose request is still arriving): drain it first.
                    with contextlib.suppress(ApiError):
                        await call.raw_body()
                return response

            return view

        return decorate

    async def _respond(
        self, fn: Route, path: dict[str, Any], call: Call, auth: bool, mutating: bool
    ) -> Response:
        request_id = call.request_id
        try:
            return await self._run(fn, path, call, auth, mutating)
        except ApiError as exc:
            return self.error_response(request_id, exc)
        except JournalFailed:
            return self.error_response(
                request_id, ApiError(503, "unavailable", "Writes are unavailable: storage failed")
            )
        except Exception:
            log.exception("unexpected error in %s (request %s)", fn.__name__, request_id)
            return self.error_response(
                request_id, ApiError(500, "internal_server_error", "Internal server error")
            )

    async def _run(
        self, fn: Route, path: dict[str, Any], call: Call, auth: bool, mutating: bool
    ) -> Response:
        request_id = call.request_id
        key: KeyRecord | None = None
        remaining = "0"
        if auth:
            key = self.authenticate(request.headers.get("X-API-Key"))
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
            remaining = str(left)
        call.key = key
        idem = request.headers.get("Idempotency-Key") if mutating else None
        if idem is None or key is None:
            result = await fn(call, **path)
            return self._render(request_id, result, remaining)
        return await self._idempotent(fn, path, call, key, idem, remaining)

    def _render(self, request_id: str, result: Result, remaining: str) -> Response:
        extra = dict(result[2]) if len(result) == 3 else {}
        extra["X-RateLimit-Remaining"] = remaining
        return self.json_response(request_id, result[0], result[1], extra)

    async def _idempotent(
        self, fn: Route, path: dict[str, Any], call: Call, key: KeyRecord, idem: str, remaining: str
    ) -> Response:
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
        method, url_path = request.method, request.path
        ttl = self.settings.idempotency_ttl_seconds * 1_000_000
        entry = hub.world.idempotent_entry(key.key_id, idem, hub.clock.now(), ttl)
        marks = {"Idempotency-Key": idem, "X-Idempotency-Source": "client"}
        if entry is not None:
            if entry.method != method or entry.path != url_path:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was already used for another request: "
                    f"{entry.method} {entry.path}",
                )
            headers = self.headers(call.request_id, entry.status)
            headers.update(marks)
            headers["X-Idempotent-Replay"] = "true"
            return Response(
                entry.body, status=entry.status, headers=headers, content_type="application/json"
            )
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
            response = self._render(call.request_id, result, remaining)
            if result[0] < 300:
                body = await response.get_data()
                assert isinstance(body, bytes)
                # the reply record joins the write's group commit: both or neither
                pending.append(
                    hub.record_idempotent(key.key_id, idem, method, url_path, result[0], body)
                )
            if pending:
                await hub.journal.wait_durable(max(pending))
            response.headers.update(marks)
            return response
        finally:
            del self._in_flight[slot]
            done.set()
