"""What the OpenAPI document says of each route that the router cannot know.

One :class:`Doc` per ``(method, pattern)`` served by the API lane: summary,
request and answer shapes (JSON Schema 2020-12, as OpenAPI 3.1 takes it),
success status and the error codes beyond the ones every route of its kind
can meet (``openapi.py`` adds authentication, body and idempotency errors).
Limits come from the live settings, so the document states this instance's
limits. One module per group of resources.
"""

from __future__ import annotations

from backchannel.config import Settings
from backchannel.http.route_docs import access, delivery, messaging, operations
from backchannel.http.route_docs.shapes import COMPONENTS, Doc

__all__ = ["COMPONENTS", "Doc", "route_docs"]


def route_docs(settings: Settings) -> dict[tuple[str, str], Doc]:
    """Every API route's :class:`Doc`, with this instance's limits."""
    return {
        **messaging.docs(settings),
        **access.docs(settings),
        **operations.docs(settings),
        **delivery.docs(settings),
    }
