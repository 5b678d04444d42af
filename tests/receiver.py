"""A real webhook receiver for tests: a loopback HTTP/1.1 server that records requests.

It answers each request with the next status of ``statuses`` (200 once they
run out), or never answers while ``hang`` is set or to a path in
``hang_paths``. Built on h11 and trio sockets, so what it records is exactly
what arrived on the wire.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import h11
import trio


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float  # trio.current_time() when the body was complete


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=list)
    hang: bool = False
    hang_paths: set[str] = field(default_factory=set)  # paths that never get an answer
    location: str = ""  # sent as Location with every 3xx answer
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    connections: int = 0
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def serve(self, nursery: trio.Nursery, port: int = 0) -> str:
        """Listen on 127.0.0.1 (``port`` 0 picks one) until the nursery ends."""
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, self._handle, port, host="127.0.0.1")
        )
        self.port = listeners[0].socket.getsockname()[1]
        return self.url

    async def wait_for(self, count: int, within: float = 5.0) -> list[Received]:
        """The first ``count`` requests, once they have arrived (fails after ``within`` seconds)."""
        with trio.fail_after(within):
            while len(self.requests) < count:
                await self._changed.wait()
        return self.requests[:count]

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            await self._serve_connection(stream)
        except trio.BrokenResourceError:
            pass  # the sender went away (killed, or it gave up on a hanging answer)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        async with stream:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = connection.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65_536)
                        connection.receive_data(data)
                        if not data and connection.their_state is not h11.DONE:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                        return
                assert request is not None
                headers = {k.decode().lower(): v.decode() for k, v in request.headers}
                self.requests.append(
                    Received(
                        request.method.decode(),
                        request.target.decode(),
                        headers,
                        body,
                        trio.current_time(),
                    )
                )
                self._changed.set()
                self._changed = trio.Event()
                if self.hang or request.target.decode() in self.hang_paths:
                    await trio.sleep_forever()
                status = self.statuses.pop(0) if self.statuses else 200
                answer_headers = [("content-length", "2")]
                if 300 <= status < 400 and self.location:
                    answer_headers.append(("location", self.location))
                reply = connection.send(h11.Response(status_code=status, headers=answer_headers))
                assert reply is not None
                await stream.send_all(reply + (connection.send(h11.Data(data=b"ok")) or b""))
                await stream.send_all(connection.send(h11.EndOfMessage()) or b"")
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()
