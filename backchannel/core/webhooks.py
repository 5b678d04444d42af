"""Actors' mention-webhook registrations (contract §2.7, §3.13).

Only registration and storage live here; delivery belongs to the webhook
sender. One webhook per actor: setting one replaces the previous one.

URL rule (contract §2.7 and §0.6): a non-empty string starting, case
insensitively, with ``http://`` or ``https://``; we also require a host
after the scheme and refuse whitespace and control characters, since such a
URL can never be delivered to. The secret is stored as given (delivery
signs with it) and never returned.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from backchannel.core import errors
from backchannel.core.errors import ApiError
from backchannel.core.events import ActorWebhookDeleted, ActorWebhookSet
from backchannel.core.records import Actor, ActorWebhook, KeyRecord

MAX_URL_CHARS = 2048
MAX_SECRET_CHARS = 512


def checked_url(value: Any) -> str:
    """A deliverable http(s) URL, else 422 ``invalid_webhook_url``."""
    bad = ApiError(422, "invalid_webhook_url", "'url' must be an http:// or https:// URL")
    if not isinstance(value, str):
        raise bad
    url = value.strip()
    if not url.lower().startswith(("http://", "https://")) or len(url) > MAX_URL_CHARS:
        raise bad
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise bad
    try:
        host = urlsplit(url).hostname
    except ValueError:
        raise bad from None
    if not host:
        raise bad
    return url


def owned_actor(actors: dict[str, Actor], key: KeyRecord, actor_id: str) -> Actor:
    """The actor with this id (never an alias) owned by the caller's owner.

    Raises: 404 ``actor_not_found``, 403 ``actor_forbidden``.
    """
    actor = actors.get(actor_id)
    if actor is None:
        raise errors.actor_not_found(actor_id)
    if actor.owner_id != key.owner_id:
        raise errors.actor_forbidden()
    return actor


class WebhookBook:
    """Mention webhooks by actor id."""

    def __init__(self) -> None:
        self.hooks: dict[str, ActorWebhook] = {}

    def decide_set(self, actor: Actor, url: str, secret: str | None, now: int) -> ActorWebhookSet:
        return ActorWebhookSet(actor.id, url, secret, now)

    def decide_delete(self, actor: Actor, now: int) -> ActorWebhookDeleted | None:
        """None when the actor has no webhook: deleting nothing still succeeds."""
        return ActorWebhookDeleted(actor.id, now) if actor.id in self.hooks else None

    def get(self, actor: Actor) -> ActorWebhook:
        hook = self.hooks.get(actor.id)
        if hook is None:
            raise ApiError(404, "webhook_not_found", "No webhook is registered for this actor")
        return hook

    def apply(self, event: ActorWebhookSet | ActorWebhookDeleted) -> None:
        match event:
            case ActorWebhookSet():
                self.hooks[event.actor_id] = ActorWebhook(
                    event.actor_id, event.url, event.secret, event.at
                )
            case ActorWebhookDeleted():
                self.hooks.pop(event.actor_id, None)
