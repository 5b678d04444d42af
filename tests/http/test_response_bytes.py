"""``response_bytes.whole_response`` writes what h11 would, and leaves h11 where it would.

Each case runs the same request into two h11 server connections, answers
one through h11's own events and the other through ``whole_response``, and
compares the bytes on the wire and the state each connection is left in.
"""

from __future__ import annotations

import h11
import pytest

from backchannel.http.response_bytes import whole_response

GET = b"GET /v1/channels/c/messages?wait=5 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
GET_CLOSE = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
GET_10 = b"GET /x HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
HEAD = b"HEAD /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b'{"data":[],"limit":50,"next_cursor":null}'
HEADERS = [
    (b"x-ratelimit-limit", b"120"),
    (b"X-Request-Id", b"5d0f8a8e-3a7b-4d0e-9a53-0b6f7f3c2b11"),
    (b"content-type", b"application/json"),
    (b"content-length", b"%d" % len(BODY)),
    (b"date", b"Mon, 30 Nov 2026 12:00:00 GMT"),
]


def received(request: bytes) -> h11.Connection:
    """A server connection that has read ``request`` whole."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(request)
    while not isinstance(connection.next_event(), h11.EndOfMessage):
        pass
    return connection


def h11_way(
    connection: h11.Connection,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    send_body: bool,
) -> bytes:
    data = connection.send(h11.Response(status_code=status, headers=headers, _parsed=True)) or b""
    if body and send_body:
        data += connection.send(h11.Data(data=body)) or b""
    data += connection.send(h11.EndOfMessage()) or b""
    return data


def states(connection: h11.Connection) -> tuple[object, object]:
    return connection.our_state, connection.their_state


@pytest.mark.parametrize(
    ("request_bytes", "status", "headers", "body", "send_body"),
    [
        pytest.param(GET, 200, HEADERS, BODY, True, id="keep-alive"),
        pytest.param(GET_CLOSE, 200, HEADERS, BODY, True, id="client-asks-to-close"),
        pytest.param(GET_10, 200, HEADERS, BODY, True, id="http-1.0-client"),
        pytest.param(HEAD, 200, HEADERS, BODY, False, id="head"),
        pytest.param(GET, 204, [(b"content-length", b"0")], b"", False, id="no-content"),
        pytest.param(
            GET,
            404,
            [(b"Content-Length", b"2"), (b"a", b"b")],
            b"{}",
            True,
            id="404",
        ),
    ],
)
def test_the_same_bytes_and_the_same_state_as_h11(
    request_bytes: bytes,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    send_body: bool,
) -> None:
    theirs = received(request_bytes)
    ours = received(request_bytes)
    expected = h11_way(theirs, status, headers, body, send_body)
    assert whole_response(ours, status, headers, body, send_body) == expected
    assert states(ours) == states(theirs)
    if states(theirs) == (h11.DONE, h11.DONE):
        theirs.start_next_cycle()
        ours.start_next_cycle()  # keep-alive: the next request may come
        assert states(ours) == states(theirs) == (h11.IDLE, h11.IDLE)


def test_a_closing_answer_says_so_and_closes() -> None:
    ours = received(GET_CLOSE)
    data = whole_response(ours, 200, HEADERS, BODY, True)
    assert data is not None
    assert data.endswith(b"\r\nConnection: close\r\n\r\n" + BODY)
    assert ours.our_state is h11.MUST_CLOSE


@pytest.mark.parametrize(
    ("status", "headers", "body"),
    [
        pytest.param(200, [(b"content-length", b"3")], b"four", id="length-not-the-body"),
        pytest.param(200, [(b"content-type", b"text/plain")], b"x", id="no-length"),
        pytest.param(200, [(b"content-length", b"1"), (b"content-length", b"1")], b"x", id="two"),
        pytest.param(200, [(b"content-length", b"-1")], b"", id="not-digits"),
        pytest.param(200, [(b"content-length", b" 1 ")], b"x", id="blanks-in-length"),
        pytest.param(200, [(b"content-length", b"1"), (b"Connection", b"close")], b"x", id="conn"),
        pytest.param(
            200, [(b"transfer-encoding", b"chunked"), (b"content-length", b"1")], b"x", id="te"
        ),
        pytest.param(200, [(b"content-length", b"1"), (b"Host", b"h")], b"x", id="host"),
        pytest.param(101, [(b"content-length", b"0")], b"", id="informational"),
    ],
)
def test_any_other_shape_is_left_to_h11_untouched(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    connection = received(GET)
    assert whole_response(connection, status, headers, body, True) is None
    assert states(connection) == (h11.SEND_RESPONSE, h11.DONE)


def test_an_answer_to_a_request_h11_could_not_parse_matches_h11_too() -> None:
    def broken() -> h11.Connection:
        connection = h11.Connection(h11.SERVER)
        connection.receive_data(b"NOT HTTP AT ALL\r\n\r\n")
        with pytest.raises(h11.RemoteProtocolError):
            connection.next_event()
        assert connection.their_state is h11.ERROR
        return connection

    theirs, ours = broken(), broken()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    expected = h11_way(theirs, 400, headers, b"{}", True)
    assert whole_response(ours, 400, headers, b"{}", True) == expected
    assert states(ours) == states(theirs)
