"""The webhook sender: one task that empties the outbox (contract §0.6, §3.13).

Theory of operation
-------------------
Deliveries are queued by the core (:mod:`backchannel.core.outbox`) in the
same journal batch as the change that caused them, and the hub tells the
sender at once (:meth:`WebhookSender.notify`). The sender keeps a heap of
``(due time, delivery id)``; its loop sleeps until the earliest is due or a
notification arrives, then starts one attempt task per due delivery.

An attempt first waits until the queueing record is durable (so a receiver
never hears of a write that a crash could still undo), then takes a slot of
its receiver (its webhook URL: at most ``webhook_per_host_concurrency``,
with slow start, see :class:`_Receiver`) and only then a global slot
(``webhook_concurrency``): deliveries to a receiver that hangs or is down
wait among themselves and hold at most one of the slots others need.
A receiver's answer is read (up to 64 KiB) so its connection is kept.
Every attempt ends within ``webhook_timeout_seconds`` and is journaled as a
``WebhookAttempted`` event; a failure is retried on the configured
schedule, then given up.

Guarantees:
    * At least once: a delivery stays pending until an attempt that got a
      2xx answer is journaled. After kill -9 the recovered outbox is
      attempted again as soon as the server is back (a delivery whose
      success was not yet journaled may be sent twice; receivers dedupe on
      ``X-Backchannel-Delivery``).
    * Targets: only http(s); unless ``webhook_allow_private``, a host that
      is or resolves to a loopback, private, link-local, reserved,
      multicast or unspecified address is refused at delivery time (a
      failed attempt). The check is made by the connection itself
      (:class:`_PublicOnly`), on the addresses it then connects to, so DNS
      rebinding cannot slip between check and connection. Redirects are
      never followed.
    * Nothing here blocks the API: the sender shares the event loop, but
      every network wait is a trio wait with a deadline.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import logging
import math
from collections import Counter, deque
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpcore
import httpx
import trio
from httpcore import SOCKET_OPTION

from backchannel.core.events import WebhookQueued
from backchannel.core.outbox import Delivery, forbidden_address, host_refused
from backchannel.runtime.journal import JournalFailed

if TYPE_CHECKING:
    from backchannel.runtime.hub import Hub

log = logging.getLogger(__name__)
USER_AGENT = "Backchannel-Webhook/1"
REFUSED = "refused:"  # starts the reason of an attempt refused for its target
MAX_ANSWER_BYTES = 65_536  # of a receiver's answer body, read to keep the connection
MAX_IDLE_RECEIVERS = 1_024  # receivers remembered (with their slot count) while idle
MAX_TASKS_PER_RECEIVER = 64  # attempt tasks per receiver; more wait in its backlog


class _Receiver:
    """One receiver's slots, its attempt tasks, and the due deliveries waiting for a task.

    Slow start: a receiver gets one slot, doubled after each delivered
    attempt up to ``most``, and back to one after an attempt that timed
    out or could not connect. A receiver that hangs or is down therefore
    holds at most one global slot once its first attempt has failed, and
    a new one holds one until it has answered; a healthy receiver reaches
    ``most`` after three deliveries.
    """

    __slots__ = ("backlog", "limiter", "most", "tasks")

    def __init__(self, most: int) -> None:
        self.most = most
        self.limiter = trio.CapacityLimiter(1)
        self.tasks = 0
        self.backlog: deque[Delivery] = deque()

    def answered(self, error: str | None) -> None:
        """Adjust the slots after an attempt (``error`` None: delivered)."""
        limiter = self.limiter
        if error is None:
            limiter.total_tokens = min(self.most, int(limiter.total_tokens) * 2)
        elif not error.startswith("HTTP "):  # no answer at all: timeout, refused, DNS
            limiter.total_tokens = 1


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the exact body>`` keyed by the secret as UTF-8."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    """Delivers the hub's outbox; see the module docstring.

    Attributes:
        outcomes: attempts by outcome (``delivered``, ``failed``,
            ``given_up``, ``refused``) since start, for metrics.
    """

    def __init__(self, hub: Hub) -> None:
        settings = hub.settings
        self.hub = hub
        self.schedule = settings.webhook_retry_schedule
        self.timeout = settings.webhook_timeout_seconds
        self.allow_private = settings.webhook_allow_private
        self.per_host = settings.webhook_per_host_concurrency
        self.outcomes: Counter[str] = Counter()
        self.in_flight = 0
        self._slots = trio.CapacityLimiter(settings.webhook_concurrency)
        self._receivers: dict[str, _Receiver] = {}
        self._due: list[tuple[float, str]] = []
        self._after_seq: dict[str, int] = {}
        self._attempting: set[str] = set()
        self._wakeup = trio.Event()
        self.cancel_scope = trio.CancelScope()

    def notify(self, event: WebhookQueued, seq: int) -> None:
        """A delivery was queued at journal ``seq``: attempt it as soon as that is durable."""
        self._after_seq[event.delivery_id] = seq
        heapq.heappush(self._due, (trio.current_time(), event.delivery_id))
        self._wakeup.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The sender task. Never returns unless cancelled (``cancel_scope`` stops it).

        Started means the recovered outbox is scheduled: every delivery still
        pending is attempted at once (a restart is a new chance, whatever
        its retry time was). A cancelled attempt is not recorded, so it is
        attempted again after the next start.
        """
        now = trio.current_time()
        self._due = [(now, delivery_id) for delivery_id in self.hub.world.outbox.pending]
        if self._due:
            log.info("webhook outbox: %d deliveries pending", len(self._due))
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
        transport = _transport(limits, self.allow_private)
        with self.cancel_scope:
            async with (
                httpx.AsyncClient(
                    transport=transport,
                    timeout=self.timeout,
                    follow_redirects=False,
                    trust_env=False,
                ) as client,
                trio.open_nursery() as nursery,
            ):
                task_status.started()
                while True:
                    self._wakeup = trio.Event()
                    self._start_due(nursery, client)
                    deadline = self._due[0][0] if self._due else math.inf
                    with trio.move_on_at(deadline):
                        await self._wakeup.wait()

    def _start_due(self, nursery: trio.Nursery, client: httpx.AsyncClient) -> None:
        """Start an attempt task per due delivery, at most a bounded number per receiver.

        A receiver that is down or hangs can have thousands of deliveries
        due; past :data:`MAX_TASKS_PER_RECEIVER` tasks they wait in its
        backlog, not as tasks, and each finished attempt starts the next.
        """
        now = trio.current_time()
        pending = self.hub.world.outbox.pending
        while self._due and self._due[0][0] <= now:
            _, delivery_id = heapq.heappop(self._due)
            delivery = pending.get(delivery_id)
            if delivery_id in self._attempting or delivery is None:
                continue
            key = _receiver_key(delivery.url)
            receiver = self._receivers.get(key)
            if receiver is None:
                receiver = self._receivers[key] = _Receiver(self.per_host)
            self._attempting.add(delivery_id)
            if receiver.tasks >= MAX_TASKS_PER_RECEIVER:
                receiver.backlog.append(delivery)
            else:
                receiver.tasks += 1
                nursery.start_soon(self._attempt, nursery, client, delivery, key, receiver)

    async def _attempt(
        self,
        nursery: trio.Nursery,
        client: httpx.AsyncClient,
        delivery: Delivery,
        key: str,
        receiver: _Receiver,
    ) -> None:
        """Wait for durability, a receiver slot, then a global slot; post; record.

        Then hand the task's place to the receiver's next waiting delivery.
        An unexpected exception in the attempt is logged and recorded as a
        failed attempt, so one bad delivery cannot stop the sender.
        """
        hub = self.hub
        try:
            seq = self._after_seq.pop(delivery.id, 0)
            if seq:
                await hub.journal.wait_durable(seq)
            async with receiver.limiter, self._slots:
                self.in_flight += 1
                try:
                    error = await self._post(client, delivery)
                except Exception as exc:
                    log.exception("webhook %s: unexpected error", delivery.id)
                    error = f"internal error: {exc!r}"
                finally:
                    self.in_flight -= 1
            receiver.answered(error)
            if delivery.id in hub.world.outbox.pending:
                self._record(delivery, error)
        except JournalFailed as exc:
            log.warning("webhook %s not attempted or not recorded: %s", delivery.id, exc)
        finally:
            self._attempting.discard(delivery.id)
            if receiver.backlog:
                following = receiver.backlog.popleft()
                nursery.start_soon(self._attempt, nursery, client, following, key, receiver)
            else:
                receiver.tasks -= 1
                if receiver.tasks == 0 and len(self._receivers) > MAX_IDLE_RECEIVERS:
                    # idle receivers keep their slot count, up to a bound
                    for idle in [k for k, r in self._receivers.items() if not r.tasks]:
                        del self._receivers[idle]

    def _record(self, delivery: Delivery, error: str | None) -> None:
        hub = self.hub
        event = hub.world.outbox.decide_attempt(delivery, hub.clock.now(), error, self.schedule)
        hub.commit_global(event)
        if error is not None and REFUSED in error:
            self.outcomes["refused"] += 1
        self.outcomes[event.outcome] += 1
        if event.next_attempt_at is not None:
            heapq.heappush(self._due, (hub.clock.trio_time(event.next_attempt_at), delivery.id))
            self._wakeup.set()
            log.info(
                "webhook %s to %s failed (attempt %d): %s",
                delivery.id,
                delivery.url,
                delivery.attempts,
                error,
            )
        elif error is not None:
            log.warning(
                "webhook %s to %s given up after %d attempts: %s",
                delivery.id,
                delivery.url,
                delivery.attempts,
                error,
            )

    async def _post(self, client: httpx.AsyncClient, delivery: Delivery) -> str | None:
        """One attempt; None when the receiver answered 2xx, else why not."""
        try:
            parts = urlsplit(delivery.url)
            host = parts.hostname
        except ValueError:
            return "invalid URL"
        if parts.scheme not in ("http", "https") or not host:
            return "invalid URL"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Backchannel-Event": delivery.event,
            "X-Backchannel-Delivery": delivery.id,
            "X-Backchannel-Timestamp": str(self.hub.clock.now() // 1_000_000),
        }
        if delivery.secret:
            headers["X-Backchannel-Signature"] = signature(delivery.secret, delivery.body)
        with trio.move_on_after(self.timeout) as timer:
            try:
                async with client.stream(
                    "POST", delivery.url, content=delivery.body, headers=headers
                ) as response:
                    status = response.status_code
                    # read a small answer to its end, so the connection is kept for
                    # the next delivery; a large one is dropped with its connection
                    received = 0
                    async for chunk in response.aiter_raw():
                        received += len(chunk)
                        if received > MAX_ANSWER_BYTES:
                            break
            except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
                return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if timer.cancelled_caught:
            return f"timeout after {self.timeout:g}s"
        return None if 200 <= status < 300 else f"HTTP {status}"


def _receiver_key(url: str) -> str:
    """A receiver is a webhook URL without its query: scheme, host, port and path.

    Two receivers on one machine, or two paths of one receiving server, do
    not share slots, so one that hangs cannot hold up the other.
    """
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{(parts.hostname or '').lower()}:{parts.port}{parts.path}"
    except ValueError:
        return url


class _PublicOnly(httpcore.TrioBackend):
    """httpcore's trio network backend, connecting only to public addresses.

    The host is resolved here, every address it resolves to is checked, and
    the connection goes to an address that was checked: a DNS answer that
    changes between a check and the connection (rebinding) cannot slip
    through. TLS still verifies and sends the URL's host name (httpcore
    passes it to ``start_tls`` separately).
    """

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host_refused(host):
            raise httpcore.ConnectError(f"{REFUSED} {host} is not a public address")
        try:
            infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"DNS: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            if forbidden_address(address):
                raise httpcore.ConnectError(f"{REFUSED} {host} resolves to {address}")
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await super().connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"DNS: no address for {host}")


def _transport(limits: httpx.Limits, allow_private: bool) -> httpx.AsyncHTTPTransport:
    """httpx's transport; unless private targets are allowed, over :class:`_PublicOnly`.

    httpx 0.28 has no argument for a network backend, so the connection pool
    it built is given ours before its first connection; if httpx changes
    that attribute, the server refuses to start rather than lose the guard.
    """
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    if not allow_private:
        pool = getattr(transport, "_pool", None)
        if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(
            pool, "_network_backend"
        ):
            raise RuntimeError("httpx changed: review the webhook target guard (_PublicOnly)")
        pool._network_backend = _PublicOnly()
    return transport
