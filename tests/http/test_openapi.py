"""The OpenAPI document: complete, served, and true to the live server.

Coverage is checked both ways against the router; conformance by
schemathesis fuzzing the live server over real HTTP (bounded here; longer
runs: ``python tools/fuzz.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import trio

from backchannel.config import Settings
from backchannel.http.api import Api
from backchannel.http.app import create_app
from backchannel.http.openapi import META_ROUTES, openapi_path
from backchannel.http.route_docs import COMPONENTS, route_docs
from backchannel.runtime.service import open_runtime
from tests.conftest import Server, serving, test_settings

REPO = Path(__file__).resolve().parents[2]


async def _api(settings: Settings) -> tuple[set[tuple[str, str]], dict[str, Any]]:
    async with open_runtime(settings, in_memory=True) as hub:
        api: Api = create_app(hub).extensions["backchannel"]
        served = {(method, pattern) for method, pattern in api.router}
        return served, json.loads(api.openapi("http://127.0.0.1:9"))


async def test_every_served_route_is_documented_and_every_documented_route_served(
    tmp_path: Path,
) -> None:
    settings = test_settings(tmp_path)
    served, document = await _api(settings)
    documented = set(route_docs(settings))
    assert served - META_ROUTES - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"
    in_document = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert in_document == {(m, openapi_path(p)) for m, p in served - META_ROUTES}


async def test_the_document_is_openapi_3_1_with_our_security_and_idempotency(
    server: Server,
) -> None:
    for path in ("/openapi.json", "/.well-known/openapi.json"):
        response = await server.http.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        document = response.json()
        assert document["openapi"] == "3.1.0"
        assert document["info"]["title"] == "Backchannel API"
        assert document["servers"] == [{"url": server.url, "description": "Production"}]
    schemes = document["components"]["securitySchemes"]
    assert schemes["ApiKeyAuth"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    post = document["paths"]["/v1/channels/{identifier}/messages"]["post"]
    assert post["security"] == [{"ApiKeyAuth": []}]
    names = [p["name"] for p in post["parameters"]]
    assert names == ["identifier", "Idempotency-Key"]
    assert set(post["responses"]) >= {"201", "401", "404", "422", "429"}
    mint = document["paths"]["/v1/keys"]["post"]
    assert mint["security"] == []
    assert "Idempotency-Key" not in [p["name"] for p in mint.get("parameters", [])]
    listing = document["paths"]["/v1/channels/{identifier}/messages"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"cursor", "limit", "wait"}
    limits = post["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert limits["actor_label"]["maxLength"] == server.settings.max_name_chars


def test_component_schemas_are_valid_json_schema() -> None:
    for schema in COMPONENTS.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for doc in route_docs(Settings()).values():
        for part in (doc.body, doc.answer):
            if part is not None:
                jsonschema.Draft202012Validator.check_schema(part)


@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_failure_against_the_live_server(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Server errors, undocumented statuses, wrong content types and answers
    that break their documented schema all fail this run. Long-polls are
    capped short so that fuzzed ``wait`` values do not eat the time budget."""
    async with serving(nursery, tmp_path, longpoll_max_wait_seconds=0.1) as server:
        await _fuzz(server)


async def _fuzz(server: Server) -> None:
    key = (await server.agent("fuzzer")).key
    command = [
        sys.executable,
        str(REPO / "tools" / "fuzz.py"),
        server.url,
        "--key",
        key,
        "--max-examples",
        "10",
    ]
    with trio.fail_after(240):
        done = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    output = done.stdout.decode(errors="replace")
    assert done.returncode == 0, output[-6000:] + done.stderr.decode(errors="replace")[-2000:]
    assert " passed" in output
