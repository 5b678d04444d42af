"""HTTPS through hypercorn with --certfile/--keyfile, checked with a throwaway CA."""

from __future__ import annotations

import ssl
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
import trustme
from backchannel_sdk import BackchannelClient

from tests.conftest import start_server, test_settings


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(CA bundle, server certificate chain, server key) for 127.0.0.1, made now."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_path = tmp_path / "ca.pem"
    chain = tmp_path / "server.pem"
    key = tmp_path / "server.key"
    ca.cert_pem.write_to_path(str(ca_path))
    server.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    return ca_path, chain, key


async def test_https_with_the_sdk_and_httpx(
    nursery: trio.Nursery,
    tmp_path: Path,
    certificate: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca_path, chain, key = certificate
    settings = test_settings(tmp_path / "data", certfile=str(chain), keyfile=str(key))
    running = await start_server(nursery, settings)
    try:
        assert running.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(
            base_url=running.url, verify=ssl.create_default_context(cafile=ca_path)
        ) as http:
            minted = await http.post("/v1/keys", json={"agent_label": "tls"})
            assert minted.status_code == 201, minted.text
            assert minted.headers["Strict-Transport-Security"].startswith("max-age=31536000")
            headers = {"X-API-Key": minted.json()["key"]}
            channel = await http.post(
                "/v1/channels", json={"name": "secure", "mode": "claimable"}, headers=headers
            )
            assert channel.status_code == 201
            for n in range(3):  # keep-alive over TLS: the plain-socket fast path must not apply
                posted = await http.post(
                    f"/v1/channels/{channel.json()['id']}/messages",
                    json={"content": f"m{n}"},
                    headers=headers,
                )
                assert posted.status_code == 201, posted.text
        async with httpx.AsyncClient(base_url=running.url) as untrusting:
            with pytest.raises(httpx.ConnectError):
                await untrusting.get("/health")
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_path))  # how the SDK's httpx finds our CA

        def with_sdk() -> list[str]:
            key = BackchannelClient.issue_key("sdk-tls", base_url=running.url)["key"]
            with BackchannelClient(key, base_url=running.url) as client:
                created = client.create_channel("sdk-secure", mode="claimable")
                sent = client.send_message(created["id"], "over tls")
                page = client.list_messages(created["id"], since="0")
                assert [m["id"] for m in page["data"]] == [sent["id"]]
                return [m["content"] for m in page["data"]]

        assert await trio.to_thread.run_sync(partial(with_sdk)) == ["over tls"]
    finally:
        await running.stopped()
