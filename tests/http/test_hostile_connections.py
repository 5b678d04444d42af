"""Hostile connections: idle crowds, headers a byte a second, no file descriptors left.

The server must keep answering ordinary requests promptly, close what only
holds a connection open, and never exit or spin.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

import httpx
import trio

from tests.conftest import serving

IDLE = 2_000
SLOW = 200
IDLE_TIMEOUT = 30.0


async def _get_health(stream: trio.SocketStream) -> bytes:
    await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = await stream.receive_some(65_536)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += await stream.receive_some(65_536)
    return head


async def test_idle_crowds_and_slow_headers_leave_plain_gets_prompt(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(
        nursery, tmp_path, idle_timeout_seconds=IDLE_TIMEOUT, longpoll_max_wait_seconds=2
    ) as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert server.settings.read_timeout == IDLE_TIMEOUT
        baseline = []
        for _ in range(50):
            started = trio.current_time()
            assert (await server.http.get("/health")).status_code == 200
            baseline.append(trio.current_time() - started)

        t0 = trio.current_time()
        idle_closed: list[float] = []
        slow_closed: list[float] = []
        all_closed = trio.Event()

        def closed(into: list[float], since: float) -> None:
            into.append(trio.current_time() - since)  # how long the server kept it
            if len(idle_closed) == IDLE and len(slow_closed) == SLOW:
                all_closed.set()

        slow_sent = [0]

        async def idle_client(asks: bool, task_status: trio.TaskStatus[None]) -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                if asks:  # one in ten has had a request answered; the rest never sent one
                    assert b" 200 " in await _get_health(stream)
                idle_from = trio.current_time()
                task_status.started()
                while await stream.receive_some(65_536):
                    pass
                closed(idle_closed, idle_from)

        async def slow_client() -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            slow_from = trio.current_time()
            request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100

            async def trickle() -> None:
                for byte in request:
                    try:
                        await stream.send_all(bytes([byte]))
                    except trio.BrokenResourceError:
                        return  # the server closed it first: the reader below sees that
                    slow_sent[0] += 1
                    await trio.sleep(1)

            async with stream, trio.open_nursery() as inner:
                inner.start_soon(trickle)
                try:
                    answer = await stream.receive_some(65_536)
                except trio.BrokenResourceError:
                    answer = b""
                assert answer == b"", answer  # closed, never answered: headers never ended
                closed(slow_closed, slow_from)
                inner.cancel_scope.cancel()

        async with trio.open_nursery() as crowd:
            for _ in range(SLOW):
                crowd.start_soon(slow_client)
            for _ in range(IDLE // 250):
                async with trio.open_nursery() as opening:  # 250 at a time
                    for n in range(250):
                        opening.start_soon(crowd.start, idle_client, n % 10 == 0)
            opened = trio.current_time() - t0
            during = []
            # every connection opened after t0, so none has reached its idle deadline before this
            with trio.move_on_at(t0 + IDLE_TIMEOUT - 1):
                for _ in range(200):
                    started = trio.current_time()
                    assert (await server.http.get("/health")).status_code == 200
                    during.append(trio.current_time() - started)
            assert len(during) >= 50, (opened, len(during))
            with trio.fail_after(IDLE_TIMEOUT + 15):
                await all_closed.wait()

        p99 = statistics.quantiles(during, n=100)[98]
        base_p99 = statistics.quantiles(baseline, n=100)[98]
        print(  # noqa: T201 (the README's figures come from this line, with pytest -s)
            f"\nhostile: {IDLE} idle + {SLOW} slow connections open in {opened:.1f} s; "
            f"plain GET p50 {statistics.median(during) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms "
            f"(alone: p99 {base_p99 * 1000:.1f} ms); slow clients closed after "
            f"{min(slow_closed):.1f}-{max(slow_closed):.1f} s of trickling "
            f"({slow_sent[0]} bytes sent)"
        )
        assert p99 < max(0.25, 10 * base_p99)
        # closed by the idle deadline: not before it, and soon after it
        assert IDLE_TIMEOUT - 1 <= min(slow_closed) <= max(slow_closed) <= IDLE_TIMEOUT + 8
        assert IDLE_TIMEOUT - 1 <= min(idle_closed) <= max(idle_closed) <= IDLE_TIMEOUT + 8


_SERVER = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[1])))
from backchannel.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_running_out_of_file_descriptors_is_survived(tmp_path: Path) -> None:
    limit = 120
    env = {
        **os.environ,
        "BACKCHANNEL_RATE_LIMIT": "0",
        "BACKCHANNEL_SNAPSHOT_INTERVAL_SECONDS": "0",
        # stock hypercorn holds a closed connection's descriptor until its keep-alive
        # timer fires (IDLE_TIMEOUT_SECONDS): short, so it recovers within the test too
        "BACKCHANNEL_IDLE_TIMEOUT_SECONDS": "8",
        "BACKCHANNEL_LONGPOLL_MAX_WAIT_SECONDS": "2",
    }
    command = [sys.executable, "-c", _SERVER, str(limit), "serve", "--port", "0"]
    command += ["--data-dir", str(tmp_path / "data")]
    log_path = tmp_path / "server.log"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            command, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    flood: list[trio.SocketStream] = []
    try:
        with trio.fail_after(30):
            while b"serving on" not in log_path.read_bytes():
                assert process.poll() is None, log_path.read_text()
                await trio.sleep(0.1)
        url = log_path.read_bytes().split(b"serving on ")[1].split()[0].decode()
        port = int(url.rsplit(":", 1)[1])
        keeper = await trio.open_tcp_stream("127.0.0.1", port)
        assert b" 200 " in await _get_health(keeper)

        answered = 0

        async def ask(stream: trio.SocketStream) -> None:
            nonlocal answered
            with trio.move_on_after(2):
                try:
                    if b" 200 " in await _get_health(stream):
                        answered += 1
                except trio.BrokenResourceError:
                    pass  # closed for want of a descriptor: allowed (the server lives on)

        for _ in range(2 * limit):  # well past the limit; the kernel's backlog takes them all
            flood.append(await trio.open_tcp_stream("127.0.0.1", port))
        async with trio.open_nursery() as asking:
            for stream in flood:
                asking.start_soon(ask, stream)
        assert answered < limit  # some were never accepted: no descriptor left for them
        fds = len(os.listdir(f"/proc/{process.pid}/fd"))
        assert fds >= limit - 5, fds

        cpu_before = _cpu_seconds(process.pid)
        for _ in range(20):  # the connection it has is still served, promptly
            with trio.fail_after(2):
                assert b" 200 " in await _get_health(keeper)
            await trio.sleep(0.1)
        await trio.sleep(1)
        busy = (_cpu_seconds(process.pid) - cpu_before) / 3
        assert busy < 0.5, busy  # not spinning on accept
        assert process.poll() is None

        for stream in flood:
            await stream.aclose()
        flood.clear()
        with trio.fail_after(25):  # recovers once load drops
            while True:
                try:
                    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
                        if (await http.get("/health")).status_code == 200:
                            break
                except httpx.HTTPError:
                    await trio.sleep(0.2)
        assert process.poll() is None
        print(  # noqa: T201 (for the README, with pytest -s)
            f"\nfd exhaustion: limit {limit}, {answered} of {2 * limit} flood connections "
            f"answered, server CPU {busy:.0%} of a core while exhausted"
        )
        await keeper.aclose()
    finally:
        for stream in flood:
            await stream.aclose()
        process.terminate()
        with trio.fail_after(15):
            await process.wait()
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE)
