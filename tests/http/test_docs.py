"""Agent documents are served, and every error code the code raises is documented."""

from __future__ import annotations

import re
from pathlib import Path

import backchannel
from backchannel.agent_docs import ERRORS
from tests.conftest import Server

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
