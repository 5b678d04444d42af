"""The webhook outbox: deliveries owed to receivers (contract §0.6, §3.13).

Theory of operation
-------------------
A change that must be pushed (a post on a channel with a webhook, an
eligible mention of an actor with a webhook, an approved access request)
produces :class:`WebhookQueued` events in the same synchronous step as the
change itself, so the journal writes both in one group commit: no answered
write can lose its webhook, and no webhook exists for an unanswered write
that did not survive. The runtime's sender reads :attr:`Outbox.pending`,
attempts each delivery, and records every attempt as a
:class:`WebhookAttempted` event decided here. Replay of the log therefore
rebuilds the exact pending set, attempt counts and retry times.

Rules
-----
1. ``decide_*`` never change anything; :meth:`Outbox.apply` is the only
   change, live and on replay.
2. A delivery is pending until an attempt says ``delivered`` or
   ``given_up``; an attempt for a delivery no longer pending changes nothing.
3. Attempts in all = retries + 1: after failure *n* (from 1) the next
   attempt is ``schedule[n-1]`` seconds later; after the last, it gives up.
4. Mentions: at most one ``mention`` delivery per (channel, actor) per
   :data:`MENTION_INTERVAL_US`; a mention inside the interval is dropped,
   not deferred (upstream's rule).
5. Bodies are ``json.dumps`` with Python's default separators, as upstream
   sent them; the stored bytes are exactly what is signed and sent.

Adding an event kind is one ``queue`` call in the decision that causes it
(see :func:`decide_member_added`).
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from backchannel.core.events import WebhookAttempted, WebhookQueued
from backchannel.core.records import ActorWebhook, ChannelConfig

MESSAGE_CREATED = "message.created"
MENTION = "mention"
MEMBER_ADDED = "member_added"
DELIVERED = "delivered"
FAILED = "failed"
GIVEN_UP = "given_up"
MENTION_INTERVAL_US = 60_000_000
_PRUNE_AT = 4_096  # mention rate entries kept before old ones are swept


@dataclass(slots=True)
class Delivery:
    """One pending delivery. Times are µs since the epoch."""

    id: str
    event: str
    url: str
    secret: str | None
    body: bytes
    created_at: int
    next_attempt_at: int
    attempts: int = 0
    last_error: str = ""
    channel_id: str | None = None
    actor_id: str | None = None


def queue(
    event: str,
    url: str,
    secret: str | None,
    payload: dict[str, Any],
    now: int,
    channel_id: str | None,
    actor_id: str | None = None,
) -> WebhookQueued:
    """The event that queues one delivery of ``payload`` to ``url``."""
    body = json.dumps(payload).encode()
    return WebhookQueued(str(uuid.uuid4()), event, url, secret, body, now, channel_id, actor_id)


def decide_member_added(
    config: ChannelConfig, member_key_id: str, approved_by: str, now: int
) -> WebhookQueued | None:
    """The ``member_added`` delivery of an approved access request, if the channel has a webhook."""
    if not config.webhook_url:
        return None
    payload = {"channel_id": config.id, "member_key_id": member_key_id, "approved_by": approved_by}
    return queue(MEMBER_ADDED, config.webhook_url, config.webhook_secret, payload, now, config.id)


def forbidden_address(address: str) -> bool:
    """Whether ``address`` (an IP literal) is one a public webhook must not reach."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_unspecified
        or ip.is_reserved
        or ip.is_multicast
    )


def host_refused(host: str) -> bool:
    """A host that is a forbidden address literally, or ``localhost``."""
    host = host.rstrip(".").lower()
    return host == "localhost" or host.endswith(".localhost") or forbidden_address(host)


def literal_target_refused(url: str) -> bool:
    """Whether a URL names a forbidden address literally (refused at creation)."""
    try:
        return host_refused(urlsplit(url).hostname or "")
    except ValueError:
        return True


class Outbox:
    """Pending deliveries plus what the mention rate limit remembers."""

    def __init__(self) -> None:
        self.pending: dict[str, Delivery] = {}
        self.mention_pushes: dict[tuple[str, str], int] = {}
        self.delivered = 0
        self.given_up = 0

    # -- deciding -------------------------------------------------------------

    def decide_message(
        self,
        config: ChannelConfig,
        message: dict[str, Any],
        mentions: list[list[str]],
        hooks: dict[str, ActorWebhook],
        now: int,
    ) -> list[WebhookQueued]:
        """Deliveries for one post: the channel's webhook and eligible mentions.

        Args:
            message: the Message object as the API shows it (§2.2).
            mentions: the post's eligible mentions ``[[actor_id, name], ...]``.
            hooks: registered mention webhooks by actor id.
        """
        out: list[WebhookQueued] = []
        if config.webhook_url:
            out.append(
                queue(
                    MESSAGE_CREATED,
                    config.webhook_url,
                    config.webhook_secret,
                    {"message": message},
                    now,
                    config.id,
                )
            )
        for actor_id, _name in mentions:
            hook = hooks.get(actor_id)
            if hook is None:
                continue
            last = self.mention_pushes.get((config.id, actor_id))
            if last is not None and now - last < MENTION_INTERVAL_US:
                continue
            payload = {"message": message, "mentioned_actor_id": actor_id}
            out.append(queue(MENTION, hook.url, hook.secret, payload, now, config.id, actor_id))
        return out

    def decide_attempt(
        self, delivery: Delivery, now: int, error: str | None, schedule: tuple[float, ...]
    ) -> WebhookAttempted:
        """Record one attempt: ``error`` None means delivered (rule 3)."""
        if error is None:
            return WebhookAttempted(delivery.id, now, DELIVERED, None, "")
        failures = delivery.attempts + 1
        if failures > len(schedule):
            return WebhookAttempted(delivery.id, now, GIVEN_UP, None, error)
        next_at = now + int(schedule[failures - 1] * 1_000_000)
        return WebhookAttempted(delivery.id, now, FAILED, next_at, error)

    # -- changing -------------------------------------------------------------

    def apply(self, event: WebhookQueued | WebhookAttempted) -> None:
        match event:
            case WebhookQueued():
                self.pending[event.delivery_id] = Delivery(
                    event.delivery_id,
                    event.event,
                    event.url,
                    event.secret,
                    event.body,
                    event.at,
                    event.at,
                    channel_id=event.channel_id,
                    actor_id=event.actor_id,
                )
                if event.event == MENTION and event.channel_id and event.actor_id:
                    pushes = self.mention_pushes
                    pushes[(event.channel_id, event.actor_id)] = event.at
                    if len(pushes) > _PRUNE_AT:
                        cutoff = event.at - MENTION_INTERVAL_US
                        for pair in [p for p, at in pushes.items() if at <= cutoff]:
                            del pushes[pair]
            case WebhookAttempted():
                delivery = self.pending.get(event.delivery_id)
                if delivery is None:
                    return
                delivery.attempts += 1
                delivery.last_error = event.error
                if event.outcome == FAILED and event.next_attempt_at is not None:
                    delivery.next_attempt_at = event.next_attempt_at
                    return
                del self.pending[event.delivery_id]
                if event.outcome == DELIVERED:
                    self.delivered += 1
                else:
                    self.given_up += 1
