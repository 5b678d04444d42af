"""A whole HTTP/1.1 response as bytes, with h11's state advanced but not its writer.

Why: h11 turns a response into bytes by rebuilding its headers (a
``Headers`` object, comma-header scans, a framing check) and running a
writer per event. Measured with ``tools/profile_fanout.py`` (py-spy, 10,000
long-polls answered at once), building the ``h11.Response`` and the three
``send`` calls were about a quarter of the server's CPU.

For the common answer the bytes h11 writes are fixed: the status line
(``HTTP/1.1 200 \\r\\n``: h11 sends no reason phrase), every header in the
order given, ``Connection: close`` last when h11 must close the connection,
a blank line and the body. :func:`whole_response` writes exactly those
itself. h11's state machine still sees the response: it is sent a stand-in
with the same framing and keep-alive meaning (``Content-Length: 0``, no
``Connection`` header, then ``EndOfMessage``), whose bytes only tell whether
h11 adds ``Connection: close`` (the client asked to close, or spoke
HTTP/1.0). The connection's state afterwards is the one h11's own path
leaves, so keep-alive and recycling are unchanged.

Rules (anything else returns None and is left to h11's own path):

1. A final status (>= 200) and exactly one ``Content-Length``, all digits
   with no blanks (h11 would rewrite it stripped), equal to the body's
   length when the body is sent.
2. No ``Connection``, ``Transfer-Encoding`` or ``Host`` header of the app's
   own (h11 would rewrite or move those).
3. Header names and values are bytes as the app gave them; like the tuned
   path before it, no validation is repeated (see ``hypercorn_tuning``).
"""

from __future__ import annotations

from collections.abc import Sequence

import h11

_REFUSED = frozenset((b"connection", b"transfer-encoding", b"host"))
_CLOSE = b"\r\nconnection: close\r\n"


def whole_response(
    connection: h11.Connection,
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    send_body: bool,
) -> bytes | None:
    """The bytes of one complete response, or None when h11 must write it.

    Args:
        connection: the server side of an h11 connection whose request has
            been received and which has sent nothing of this response yet.
        status: the status code.
        headers: the response headers, in order.
        body: the whole body.
        send_body: False for a HEAD request or a 204/304 (headers only).

    Returns:
        The bytes to write (empty when h11 refuses the response because
        the peer is in error, as h11's own path gives), or None when the
        rules in the module docstring do not hold; then ``connection`` is
        untouched.

    Raises:
        h11.LocalProtocolError: h11 refused the response while the peer is
            not in error (a bug in the caller, as on h11's own path).
    """
    if status < 200:
        return None
    length: bytes | None = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length":
            if length is not None:
                return None
            length = value
        elif lowered in _REFUSED:
            return None
    if length is None or not length.isdigit():
        return None
    if send_body and int(length) != len(body):
        return None
    stand_in = h11.Response(status_code=status, headers=[(b"content-length", b"0")])
    try:
        probe = connection.send(stand_in) or b""
        connection.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        if connection.their_state != h11.ERROR:
            raise
        return b""
    parts = [b"HTTP/1.1 %d \r\n" % status]
    parts += [b"%s: %s\r\n" % pair for pair in headers]
    if _CLOSE in probe.lower():
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    if send_body:
        parts.append(body)
    return b"".join(parts)
