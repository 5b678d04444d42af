"""Status and metrics routes (contract §2.11): /metrics, /status, /status.html,
channel metrics, the caller's observability metrics and account usage.

Reads only: every figure comes from the runtime's state or counters in the
caller's task, in one synchronous step (no actor round trip), except that a
channel whose lease or TTL is due first lets its actor apply the expiry, so
an expired lease counts as unclaimed at once.
"""

from __future__ import annotations

import html
from typing import Any

from backchannel import __version__
from backchannel.core.errors import ApiError
from backchannel.core.timefmt import format_ts
from backchannel.http.api import Api, Call, Page, Result
from backchannel.runtime.metrics import CONTENT_TYPE

AVAILABILITY = "best-effort — this is a free, open test instance"
USAGE_NOTE = (
    "Watch X-RateLimit-Remaining on responses. When it reaches 0, wait for the window "
    "to pass (Retry-After on a 429 says how long) or self-host for higher limits."
)


def register(api: Api) -> None:
    hub = api.hub
    settings = api.settings

    def status_word() -> str:
        return "degraded" if hub.journal.statistics().failed else "operational"

    @api.route("GET", "/metrics", auth=False)
    async def metrics(call: Call) -> Result:
        if api.metrics is None:
            raise ApiError(404, "not_found", "Metrics are disabled on this instance")
        return 200, Page(api.metrics.render(), CONTENT_TYPE)

    @api.route("GET", "/status", auth=False)
    async def status(call: Call) -> Result:
        base = api.base_url(call.request)
        return 200, {
            "status": status_word(),
            "version": __version__,
            "instance_kind": settings.instance_kind,
            "updated_at": format_ts(hub.clock.now()),
            "availability": AVAILABILITY,
            "health_url": f"{base}/health",
            "self_host_url": f"{base}/repo/blob/main/SELF-HOST.md",
            # live counters (ours, additive): the pages show them
            "public_minting_enabled": api.public_minting_enabled,
            "channels": len(hub.world.channels),
            "live_messages": sum(c.live_count for c in hub.world.channels.values()),
            "parked_waiters": hub.parked,
            "active_channels": len(hub.passivation.running),
            "passive_channels": len(hub.actors) - len(hub.passivation.running),
        }

    @api.route("GET", "/status.html", auth=False)
    async def status_page(call: Call) -> Result:
        return 200, Page(_status_html(api, status_word()), "text/html; charset=utf-8")

    @api.route("GET", "/v1/channels/<identifier>/metrics")
    async def channel_metrics(call: Call, identifier: str) -> Result:
        actor = hub.channel_actor(identifier, call.auth)
        deadline = actor.state.next_deadline()
        if deadline is not None and deadline <= hub.clock.now():
            await actor.call(actor.cmd_page, 0, 1, None, None)  # apply what came due
        counts = {"total": 0, "unclaimed": 0, "claimed": 0, "acknowledged": 0, "leased": 0}
        spans: list[int] = []
        for message in actor.state.live.values():
            counts["total"] += 1
            counts["claimed" if message.claimed_by_id is not None else "unclaimed"] += 1
            if message.lease_token is not None:
                counts["leased"] += 1
            if message.acks:
                counts["acknowledged"] += 1
                if message.claimed_at is not None:
                    spans.extend(ack[2] - message.claimed_at for ack in message.acks)
        leased = counts.pop("leased")
        return 200, {
            "channel_id": actor.channel_id,
            "message_counts": counts,
            "avg_claim_to_ack_ms": round(sum(spans) / len(spans) / 1000) if spans else None,
            "computed_at": format_ts(hub.clock.now()),
            "waiters": actor.parked,
            "unclaimed": counts["unclaimed"],
            "claimed": counts["claimed"],
            "leased": leased,
        }

    @api.route("GET", "/v1/observability/metrics")
    async def observability(call: Call) -> Result:
        key_id = call.auth.key_id
        owned = [c for c in hub.world.channels.values() if c.config.owner_key_id == key_id]
        return 200, {
            "key_id": key_id,
            "channels_owned": len(owned),
            "messages_in_owned_channels": sum(c.live_count for c in owned),
            "messages_claimed_in_owned_channels": sum(c.claimed_count for c in owned),
            "active_sessions": len(hub.world.sessions.listing(key_id, hub.clock.now())),
        }

    @api.route("GET", "/account/usage")
    async def usage(call: Call) -> Result:
        return 200, {
            "key_id": call.auth.key_id,
            "plan": "free",
            "rate_limit": {
                "requests_per_window": settings.rate_limit,
                "window_seconds": settings.rate_limit_window,
            },
            "instance_kind": settings.instance_kind,
            "note": USAGE_NOTE,
        }


def _status_html(api: Api, word: str) -> bytes:
    hub = api.hub
    journal = hub.journal.statistics()
    outbox = hub.world.outbox
    snapshot = hub.last_snapshot
    rows: list[tuple[str, str, str]] = [
        ("HTTP API", "ok", f"{len(hub.actors)} channels, {hub.parked} long-polls parked"),
        (
            "Storage",
            "degraded" if journal.failed else "ok",
            f"journal at seq {journal.last_durable_seq}, {journal.queued} records queued",
        ),
        (
            "Snapshots",
            "ok",
            f"last: {snapshot.path.name}, {snapshot.bytes} bytes in {snapshot.seconds:.2f}s"
            if snapshot is not None
            else "none since start",
        ),
        (
            "Webhook sender",
            "ok",
            f"{len(outbox.pending)} pending, {outbox.delivered} delivered, "
            f"{outbox.given_up} given up",
        ),
    ]
    body = "".join(
        f"<tr><td>{html.escape(name)}</td><td class={state}>{state}</td>"
        f"<td>{html.escape(detail)}</td></tr>"
        for name, state, detail in rows
    )
    pill = "Operational" if word == "operational" else "Degraded"
    page: list[Any] = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<title>Backchannel status</title><style>",
        "body{font-family:sans-serif;max-width:48rem;margin:2rem auto}",
        ".ok{color:#176f2c}.degraded{color:#a33}td{padding:.3rem .8rem}</style></head><body>",
        f"<h1>Backchannel status: <span class={word}>{pill}</span></h1>",
        f"<p>Version {html.escape(__version__)} — {html.escape(api.settings.instance_kind)}, ",
        f"updated {format_ts(hub.clock.now())}</p><table>{body}</table></body></html>",
    ]
    return "".join(page).encode()
