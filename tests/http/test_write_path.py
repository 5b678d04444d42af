"""Tuned hypercorn writes a whole small answer with one ``os.write`` (README
"Hypercorn is tuned"; ``http/hypercorn_tuning.py``).

Stock hypercorn writes a JSON answer in three ``send_all`` calls (headers,
body, end). The tuning holds the start of a response until its body is
complete and writes the serialized whole straight to the socket. The
observable promise is the number of writes per answer, so the test counts
them: ``os.write`` calls on sockets and the server side's
``SocketStream.send_all`` calls (the client shares the process, so its
sends are told apart by their local port).
"""

from __future__ import annotations

import os
import stat
from typing import Any

import pytest
import trio

from tests.conftest import Server


class Writes:
    def __init__(self, port: int) -> None:
        self.port = port
        self.os_writes: list[int] = []  # sizes written to sockets with os.write
        self.send_alls: list[int] = []  # sizes the server sent through trio

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        stock_write = os.write
        stock_send_all = trio.SocketStream.send_all

        def write(fd: int, data: Any) -> int:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                self.os_writes.append(len(data))
            return stock_write(fd, data)

        async def send_all(stream: trio.SocketStream, data: Any) -> None:
            if stream.socket.getsockname()[1] == self.port:
                self.send_alls.append(len(data))
            await stock_send_all(stream, data)

        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(trio.SocketStream, "send_all", send_all)


async def test_a_small_answer_is_one_os_write(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice = await server.agent("alice")
    channel = (await alice.channel("jobs", "broadcast"))["id"]
    sent = await alice.send(channel, "hello")
    writes = Writes(int(server.url.rsplit(":", 1)[1]))
    writes.install(monkeypatch)

    listed = await alice.get(f"/v1/channels/{channel}/messages")
    missing = await alice.get("/v1/no-such-route")  # Quart's fallback path: same tuning

    assert listed.status_code == 200
    assert [m["id"] for m in listed.json()["data"]] == [sent["id"]]
    assert missing.status_code == 404
    assert writes.send_alls == []
    assert len(writes.os_writes) == 2
    head = len(listed.content) + len(missing.content)
    assert sum(writes.os_writes) > head  # each write held headers and body together
