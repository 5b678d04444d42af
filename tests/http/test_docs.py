"""Agent documents are served, and every error code the code raises is documented."""

from __future__ import annotations

import re
from pathlib import Path

import trio

import backchannel
from backchannel.agent_docs import ERRORS
from backchannel.agent_docs.documents import DOC_NAMES
from tests.conftest import Server, serving

_RAISED = re.compile(r'ApiError\(\s*(\d{3}),\s*"([a-z_]+)"', re.S)


def test_every_raised_error_code_is_in_the_registry_with_its_status() -> None:
    package = Path(backchannel.__file__).parent
    found: dict[str, int] = {}
    for path in package.rglob("*.py"):
        for status, code in _RAISED.findall(path.read_text(encoding="utf-8")):
            found[code] = int(status)
    assert len(found) > 30
    missing = {code for code in found if code not in ERRORS}
    assert missing == set()
    wrong = {code for code, status in found.items() if ERRORS[code][0] != status}
    assert wrong == set()


async def test_llms_txt_speaks_of_this_instance(server: Server) -> None:
    response = await server.http.get("/llms.txt")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert f"{server.url}/v1/keys" in response.text
    assert "backchannel.oakstack.eu" not in response.text


async def test_error_docs_have_an_anchor_for_every_code(server: Server) -> None:
    response = await server.http.get("/docs/errors.md")
    assert response.status_code == 200
    for code in ERRORS:
        assert f"## {code}\n" in response.text
    agent = await server.agent()
    error = (await agent.get("/v1/channels/nope")).json()
    assert error["documentation_url"] == f"{server.url}/docs/errors.md#channel-not-found"


async def test_documents_are_served_with_their_types_and_this_instance(server: Server) -> None:
    texts = {
        "/llms.txt": "text/plain; charset=utf-8",
        "/agent-guide": "text/plain; charset=utf-8",
        "/first-success-prompt.txt": "text/plain; charset=utf-8",
        "/robots.txt": "text/plain; charset=utf-8",
        **{f"/docs/{name}.md": "text/markdown; charset=utf-8" for name in DOC_NAMES},
    }
    for path, content_type in texts.items():
        response = await server.http.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Type"] == content_type, path
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "backchannel.oakstack.eu" not in response.text, path
        assert "$" not in response.text.replace("$(", ""), path  # no unfilled placeholder
        if path not in ("/docs/errors.md",):
            assert server.url in response.text, path
    robots = (await server.http.get("/robots.txt")).text
    assert "User-agent: *\nAllow: /" in robots
    assert f"# {server.url}/llms.txt" in robots


async def test_documents_state_the_live_limits(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(
        nursery,
        tmp_path,
        rate_limit=77,
        rate_limit_window=30,
        max_message_bytes=4321,
        lease_max_seconds=900,
        longpoll_max_wait_seconds=12,
        base_url="https://bus.example.org/",
    ) as server:
        llms = (await server.http.get("/llms.txt")).text
        assert "77 requests per 30 s per key" in llms
        assert "4321 UTF-8 bytes" in llms
        assert "Leases: 5–900 s, default 300 s" in llms
        assert "capped at 12 s" in llms
        assert "POST https://bus.example.org/v1/keys" in llms
        assert str(server.url) not in llms
        policy = (await server.http.get("/.well-known/agent-policy.json")).json()
        assert policy["rate_limit"]["requests_per_window"] == 77
        assert policy["rate_limit"]["window_seconds"] == 30
        assert policy["max_content_bytes"] == 4321
        assert policy["lease_seconds"] == {"min": 5, "max": 900, "default": 300}
        assert policy["longpoll_max_wait_seconds"] == 12
        manifest = (await server.http.get("/ai-manifest.json")).json()
        assert manifest["base_url"] == "https://bus.example.org"


async def test_unknown_documents_are_plain_route_misses(server: Server) -> None:
    for path in ("/docs/nope.md", "/docs/security.md", "/docs/protocol.txt"):
        response = await server.http.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"error": "not_found", "message": f"No route for GET {path}"}
    response = await server.http.post("/llms.txt")
    assert response.status_code == 404


async def test_ai_manifest_plugin_and_policy_shapes(server: Server) -> None:
    base = server.url
    for path in ("/ai-manifest.json", "/.well-known/ai-manifest.json"):
        response = await server.http.get(path)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        manifest = response.json()
        assert "version" not in manifest
        assert manifest["name"] == "Backchannel"
        assert manifest["api_version"] == "1.0"
        assert manifest["base_url"] == base
        assert manifest["auth"] == {
            "type": "api_key",
            "header": "X-API-Key",
            "obtain_url": f"{base}/v1/keys",
            "obtain_description": manifest["auth"]["obtain_description"],
            "public_minting_enabled": True,
        }
        assert manifest["transports"]["http"] == {"openapi_url": f"{base}/openapi.json"}
        assert manifest["transports"]["mcp"]["package"] == "backchannel-mcp"
        assert manifest["transports"]["mcp"]["tools"] == [
            "post_task",
            "claim_task",
            "await_result",
            "broadcast",
            "subscribe",
            "list_channels",
            "issue_key",
        ]
        assert "idempotent_writes" in manifest["capabilities"]
        assert len(manifest["capabilities"]) == 7
        assert manifest["claim_guarantees"]["duplicate_response"] == "409 already_claimed"
        assert manifest["openapi_url"] == f"{base}/openapi.json"
        assert manifest["agent_guide_url"] == f"{base}/agent-guide"
        assert manifest["llms_txt_url"] == f"{base}/llms.txt"
        assert len(manifest["supported_frameworks"]) == 8
        assert base in manifest["recommended_system_prompt_snippet"]
    plugin = (await server.http.get("/.well-known/ai-plugin.json")).json()
    assert plugin["schema_version"] == "v1"
    assert plugin["name_for_model"] == "backchannel"
    assert plugin["auth"] == {"type": "user_http", "authorization_type": "bearer"}
    assert plugin["api"] == {
        "type": "openapi",
        "url": f"{base}/openapi.json",
        "is_user_authenticated": True,
    }
    assert plugin["logo_url"] == f"{base}/favicon.ico"
    assert plugin["legal_info_url"] == f"{base}/docs/protocol.md"
    assert {"name_for_human", "description_for_human", "description_for_model"} <= set(plugin)
    policy = (await server.http.get("/.well-known/agent-policy.json")).json()
    settings = server.settings
    assert policy["rate_limit"]["requests_per_window"] == settings.rate_limit
    assert policy["retry_guidance"] == {
        "on_429": "back_off_and_retry",
        "retry_after_header": True,
        "idempotency_key_supported": True,
    }
    assert policy["message_ttl_hours"] == 24
    assert policy["max_content_bytes"] == settings.max_message_bytes
    assert policy["claim_guarantee"] == "exactly_once"
    assert policy["instance_kind"] == "self-hosted"


async def test_well_known_backchannel_redirects_to_the_manifest(server: Server) -> None:
    response = await server.http.get("/.well-known/backchannel.json")
    assert response.status_code == 302
    assert response.headers["Location"] == "/.well-known/ai-manifest.json"
    assert response.content == b""
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Content-Length"] == "0"


async def test_manifest_follows_the_minting_setting(nursery: trio.Nursery, tmp_path: Path) -> None:
    async with serving(nursery, tmp_path, public_minting_enabled=False) as server:
        manifest = (await server.http.get("/.well-known/ai-manifest.json")).json()
        assert manifest["auth"]["public_minting_enabled"] is False
        assert "closed" in manifest["auth"]["obtain_description"]
        llms = (await server.http.get("/llms.txt")).text
        assert "Public minting is closed on this instance" in llms


async def test_documents_answer_cors_preflight(server: Server) -> None:
    for path in (
        "/",
        "/humans",
        "/llms.txt",
        "/docs/protocol.md",
        "/.well-known/agent-policy.json",
    ):
        response = await server.http.request("OPTIONS", path)
        assert response.status_code == 204, path
    response = await server.http.request("OPTIONS", "/docs/nope.md")
    assert response.status_code == 404


async def test_llms_txt_follows_durability_and_sandbox_settings(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path, fsync="interval", sandbox_enabled=False) as server:
        llms = (await server.http.get("/llms.txt")).text
        assert "a crash can lose the last writes it answered" in llms
        assert "This instance has no sandbox channel" in llms
    async with serving(nursery, tmp_path / "default") as server:
        llms = (await server.http.get("/llms.txt")).text
        assert "a crash after the answer loses nothing" in llms
        assert "no sandbox channel" not in llms


async def test_repo_redirects_keep_the_rest_of_the_path(server: Server) -> None:
    for path, target in [
        ("/repo", "https://github.com/davidiscarvalho/backchannel"),
        (
            "/repo/blob/main/SELF-HOST.md",
            "https://github.com/davidiscarvalho/backchannel/blob/main/SELF-HOST.md",
        ),
    ]:
        response = await server.http.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == target
        assert response.content == b""


async def test_the_playground_lists_every_operation_without_script(server: Server) -> None:
    page = await server.http.get("/docs/playground")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<script" not in page.text
    document = (await server.http.get("/openapi.json")).json()
    for path, item in document["paths"].items():
        for method in item:
            assert f"<code>{method.upper()}</code></td><td><code>{path}</code>" in page.text
