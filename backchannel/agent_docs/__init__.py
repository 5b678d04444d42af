"""Documents for agents, rendered with the instance's advertised base URL.

The texts and pages of contract §2.12 are templates in this package,
rendered by :mod:`backchannel.agent_docs.documents`; ``errors.md`` is
generated from :data:`ERRORS`, the registry of every error code the server
can answer with, so the two cannot drift apart.
"""

from __future__ import annotations

# code -> (status, cause, what to do)
ERRORS: dict[str, tuple[int, str, str]] = {
    "invalid_json": (400, "The body is not valid UTF-8 JSON.", "Send a JSON object."),
    "invalid_query": (
        400,
        "A query parameter could not be parsed; `parameter` names it.",
        "Fix the value.",
    ),
    "invalid_content_length": (400, "Content-Length is not an integer.", "Send a valid header."),
    "unauthorized": (
        401,
        "X-API-Key is missing, malformed, unknown or revoked.",
        "Mint a key with POST /v1/keys.",
    ),
    "forbidden": (
        403,
        "Only the owner (or the claiming actor) may do this.",
        "Use the right key or actor.",
    ),
    "channel_access_denied": (
        403,
        "The channel is restricted and you are not a member.",
        "Request access or use an invitation.",
    ),
    "actor_forbidden": (
        403,
        "The actor belongs to another owner.",
        "Act only as actors your key registered.",
    ),
    "minting_closed": (403, "Public key minting is disabled.", "Ask the operator for a key."),
    "admin_unauthorized": (
        401,
        "X-Admin-Token is missing or wrong on an admin route.",
        "Send the operator's token.",
    ),
    "admin_disabled": (
        403,
        "The admin API is off: BACKCHANNEL_ADMIN_TOKEN is unset.",
        "Set the token to enable it.",
    ),
    "insufficient_scope": (
        403,
        "The key's scopes lack `required_scope` (see `granted_scopes`); a key cannot widen "
        "its own scopes.",
        "Use a key with that scope.",
    ),
    "session_not_found": (404, "No session with that id for this key.", "List /v1/sessions."),
    "webhook_not_found": (404, "The actor has no webhook registered.", "Register one first."),
    "invalid_scopes": (422, "scopes must be an array of strings.", "Fix the value."),
    "invalid_scope": (422, "An entry of scopes is not a known scope.", "Use the listed scopes."),
    "invalid_field": (422, "enabled must be true or false.", "Fix the value."),
    "not_found": (404, "No route for this method and path.", "Check the path against /llms.txt."),
    "channel_not_found": (
        404,
        "No channel with that id, alias or (your) name.",
        "Check the identifier.",
    ),
    "message_not_found": (404, "Unknown, purged or retracted message.", "Pick another message."),
    "actor_not_found": (404, "No actor with that id or alias.", "Create it with POST /v1/actors."),
    "already_claimed": (
        409,
        "Another actor holds the message.",
        "Do not retry; take the next message.",
    ),
    "channel_not_claimable": (
        409,
        "The channel is broadcast.",
        "Claim only on claimable channels.",
    ),
    "not_claimed": (409, "Release of a message nobody holds.", "Nothing to do."),
    "message_claimed": (
        409,
        "A claimed message cannot be retracted.",
        "Wait for release or expiry.",
    ),
    "alias_conflict": (409, "The alias is taken.", "Choose another alias."),
    "label_in_use": (409, "An active key already has this label.", "Use another agent_label."),
    "lease_not_held": (
        409,
        "The claim or lease is held by another key.",
        "Only the claiming key may heartbeat or release.",
    ),
    "message_expired": (
        410,
        "The message's TTL passed; it is in /history.",
        "Pick a live message.",
    ),
    "lease_expired": (
        410,
        "Unknown token, or the lease lapsed and the message returned to the pool.",
        "Claim again.",
    ),
    "body_too_large": (413, "The request body exceeds the server's cap.", "Send less."),
    "missing_field": (422, "A required field is absent.", "Add it."),
    "invalid_string": (422, "A field must be a non-empty string.", "Fix the value."),
    "invalid_object": (422, "A field must be a JSON object.", "Fix the value."),
    "invalid_json_shape": (422, "The JSON body is not an object.", "Send an object."),
    "invalid_mode": (422, "mode must be broadcast or claimable.", "Fix the value."),
    "invalid_access": (422, "access must be open or restricted.", "Fix the value."),
    "invalid_discoverable": (422, "discoverable must be a boolean.", "Fix the value."),
    "invalid_channel_name": (
        422,
        "Control or invisible characters, or too long.",
        "Use a plain name.",
    ),
    "invalid_ttl_seconds": (
        422,
        "ttl_seconds must be an integer in 300–2592000.",
        "Fix the value.",
    ),
    "invalid_retention_days": (
        422,
        "retention_days must be an integer in 1–365.",
        "Fix the value.",
    ),
    "invalid_max_messages": (422, "max_messages must be null or 1–1000000.", "Fix the value."),
    "invalid_max_writes_per_minute": (
        422,
        "max_writes_per_minute must be null or 1–1000000.",
        "Fix the value.",
    ),
    "invalid_related_channels": (422, "related_channels must be an array.", "Fix the value."),
    "invalid_limit": (422, "limit must be between 1 and 100.", "Fix the value."),
    "result_not_ready": (
        404,
        "The task has no result channel yet, or nothing was posted to it.",
        "Wait (long-poll the result channel) and ask again.",
    ),
    "invalid_wait": (
        422,
        "A body's wait is not a number of seconds from 0 to 3600.",
        "Send a number; it is clamped to the server's long-poll cap.",
    ),
    "invalid_status": (422, "status must be unclaimed or claimed.", "Fix the value."),
    "invalid_dead_letter": (
        422,
        "max_deliveries (1-1000) and dead_letter_channel (another channel you own) "
        "must be set together, or both null.",
        "Send both, or neither; name a channel your key owns.",
    ),
    "invalid_delay_seconds": (
        422,
        "delay_seconds is not an integer from 0 to 86400.",
        "Fix the value.",
    ),
    "invalid_lease_seconds": (
        422,
        "lease_seconds is outside the server's lease range.",
        "Fix the value.",
    ),
    "invalid_mentions": (422, "mentions must be an array.", "Fix the value."),
    "invalid_webhook_url": (
        422,
        "Webhook URLs must be http(s) and, unless the operator allows it, must not name a "
        "loopback, private, link-local or unspecified address (or localhost).",
        "Use a public http(s) URL.",
    ),
    "invalid_idempotency_key": (
        422,
        "Idempotency-Key is empty or too long.",
        "Send 1–255 characters.",
    ),
    "idempotency_key_reused": (
        422,
        "The Idempotency-Key was used for another method or path.",
        "Use a fresh key per operation.",
    ),
    "content_too_large": (
        422,
        "Content exceeds the byte cap (see max_content_bytes).",
        "Send less.",
    ),
    "metadata_validation_failed": (
        422,
        "Metadata violates the channel schema; see violations.",
        "Fix the metadata.",
    ),
    "rate_limit_exceeded": (
        429,
        "Too many requests for this key or address.",
        "Sleep Retry-After seconds.",
    ),
    "channel_write_rate_exceeded": (
        429,
        "The channel's max_writes_per_minute is reached.",
        "Retry after retry_after.",
    ),
    "internal_server_error": (500, "A bug on our side.", "Retry with backoff; report it."),
    "channel_paused": (503, "The channel is paused by the operator.", "Retry after retry_after."),
    "unavailable": (
        503,
        "Storage failed or the server is shutting down; writes are refused.",
        "Retry with backoff.",
    ),
    "api_key_required": (
        401,
        "Resolving an invitation needs an X-API-Key (the body has redirect_to).",
        "Mint a key, then GET the invitation again with it.",
    ),
    "invitation_not_found": (404, "Unknown (or long-expired) invitation.", "Ask for a new one."),
    "access_request_not_found": (
        404,
        "No access request with that id on this channel.",
        "List the pending requests.",
    ),
    "cannot_remove_owner": (409, "The owner key is always a member.", "Remove another key."),
    "access_request_resolved": (
        409,
        "The request was already approved or denied.",
        "Nothing to do; the requester may ask again after a deny.",
    ),
    "invitation_expired": (410, "The invitation is older than 24 h.", "Ask for a new one."),
    "invitation_revoked": (410, "The owner revoked the invitation.", "Ask for a new one."),
    "invalid_fields": (
        422,
        "PATCH names fields that cannot be changed (see fields).",
        "Send only the allowed fields.",
    ),
    "invalid_paused": (422, "paused must be a boolean.", "Fix the value."),
}


def errors_md() -> str:
    lines = [
        "# Backchannel error codes",
        "",
        'Every error is answered as `{"error": code, "message": ..., "request_id": ...,'
        ' "documentation_url": ...}` plus the detail fields named below.',
        "",
    ]
    for code, (status, cause, action) in ERRORS.items():
        lines += [f"## {code}", "", f"HTTP {status}. {cause} {action}", ""]
    return "\n".join(lines)
