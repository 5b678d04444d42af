"""Route docs of the delivery semantics: claim-next that waits, redrive (issue 12)."""

from __future__ import annotations

from backchannel.config import Settings
from backchannel.http.route_docs.shapes import (
    CHANNEL_READ,
    STRING,
    WAIT,
    Doc,
    Fields,
    obj,
    ref,
)


def docs(settings: Settings) -> dict[tuple[str, str], Doc]:
    f = Fields(settings)
    channel = "/v1/channels/<identifier>"
    return {
        ("POST", f"{channel}/claim-next"): Doc(
            "claimNext",
            "Claim the oldest unclaimed visible message, atomically; with `wait`, park "
            "until one is handed to you (oldest parked first) or answer `claimed: null`.",
            "claims",
            answer=ref("ClaimNext"),
            body=obj(
                {},
                {
                    "actor": STRING,
                    "metadata": f.metadata,
                    "lease_seconds": f.lease,
                    "wait": WAIT,
                },
            ),
            errors=(
                *CHANNEL_READ,
                "channel_not_claimable",
                "actor_forbidden",
                "invalid_lease_seconds",
                "invalid_wait",
                "invalid_string",
                "invalid_object",
            ),
        ),
        ("POST", f"{channel}/redrive"): Doc(
            "redrive",
            "Move dead-lettered messages back to their source channel (or `to`) with "
            "`deliveries` reset (owner only).",
            "channels",
            answer=obj({"moved": {"type": "integer", "minimum": 0}}),
            body=obj(
                {},
                {
                    "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "to": {"type": "string", "description": "id or alias of a channel you own"},
                },
            ),
            errors=(*CHANNEL_READ, "forbidden", "invalid_limit", "invalid_string"),
        ),
    }
