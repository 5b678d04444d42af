"""Every HTTP example in the agent documents runs, in order, against a live server.

Examples are fenced ```` ```http ```` blocks (request line with the full
URL, headers, a blank line, a JSON body) followed by ``→ <status>``, an
optional error code, and ``save `field.path` as `<name>``` clauses; a
``<name>`` in a later request is filled from that saved value (format:
:mod:`backchannel.agent_docs.documents`). Each document is fetched from the
server, so the examples are checked as an agent sees them, rendered with the
advertised base URL, and run on a fresh server of its own.

Blocks fenced ``http-later`` describe routes that are not served by this
build yet (restricted-channel invitations, webhooks, ...); they are parsed
and counted but not run. The marker is removed once the route is served.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from backchannel.agent_docs.documents import DOC_NAMES
from tests.conftest import serving

_FENCE = re.compile(r"^```(http|http-later)\n(.*?)\n```\n([^\n]*)", re.S | re.M)
_EXPECT = re.compile(r"^→ (\d{3})(?: ([a-z_]+))?(?: — (.*))?$")
_SAVE = re.compile(r"`([\w.]+)` as `<(\w+)>`")
_PLACEHOLDER = re.compile(r"<(\w+)>")

DOCUMENTS = [
    "/llms.txt",
    "/agent-guide",
    "/first-success-prompt.txt",
    *(f"/docs/{name}.md" for name in DOC_NAMES),
]
# documents whose examples are all runnable now (each must hold at least one)
WITH_EXAMPLES = {
    "/llms.txt",
    "/agent-guide",
    "/first-success-prompt.txt",
    "/docs/protocol.md",
    "/docs/reliability.md",
    "/docs/invitations-flow.md",
    "/docs/auth-integration.md",
}


@dataclass
class Example:
    method: str
    url: str
    headers: dict[str, str]
    body: str
    status: int
    code: str | None
    saves: list[tuple[str, str]] = field(default_factory=list)
    later: bool = False


def parse(text: str) -> list[Example]:
    """Every example of ``text``, in order; a malformed one fails the test."""
    examples = []
    for match in _FENCE.finditer(text):
        kind, block, expect_line = match.groups()
        expect = _EXPECT.match(expect_line)
        assert expect is not None, f"no '→ status' line after:\n{block}\nfound: {expect_line!r}"
        head, _, body = block.partition("\n\n")
        lines = head.split("\n")
        method, url = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(": ")
            assert value, f"bad header line {line!r}"
            headers[name] = value
        status, code, rest = expect.groups()
        examples.append(
            Example(
                method=method,
                url=url,
                headers=headers,
                body=body,
                status=int(status),
                code=code,
                saves=_SAVE.findall(rest or ""),
                later=kind == "http-later",
            )
        )
    return examples


def _fill(text: str, saved: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in saved, f"<{name}> is used before an example saves it"
        return saved[name]

    return _PLACEHOLDER.sub(one, text)


def _dig(payload: Any, path: str) -> str:
    for part in path.split("."):
        payload = payload[part]
    assert isinstance(payload, str), (path, payload)
    return payload


async def run_examples(http: httpx.AsyncClient, base: str, examples: list[Example]) -> int:
    """Run the examples in order; returns how many ran."""
    saved: dict[str, str] = {}
    ran = 0
    for example in examples:
        if example.later:
            continue
        assert example.url.startswith(base + "/"), example.url
        url = _fill(example.url, saved)
        headers = {name: _fill(value, saved) for name, value in example.headers.items()}
        body = _fill(example.body, saved)
        if body:
            json.loads(body)  # every example body is valid JSON
            assert headers.get("Content-Type") == "application/json", example
        with trio.fail_after(10):
            response = await http.request(
                example.method, url, headers=headers, content=body.encode() or None
            )
        where = f"{example.method} {example.url}"
        assert response.status_code == example.status, f"{where}: {response.text}"
        if example.code is not None:
            assert response.json()["error"] == example.code, f"{where}: {response.text}"
        for path, name in example.saves:
            saved[name] = _dig(response.json(), path)
        ran += 1
    return ran


def test_the_parser_reads_status_code_and_saves() -> None:
    text = (
        "Intro\n\n```http\nPOST http://h/v1/x\nX-API-Key: <key>\nContent-Type: application/json"
        '\n\n{"a": "<id>"}\n```\n→ 201 — save `message.id` as `<m>`, `next_cursor` as `<c>`\n\n'
        "```http-later\nGET http://h/v1/y\n```\n→ 404 channel_not_found\n"
    )
    first, second = parse(text)
    assert (first.method, first.url, first.status, first.code) == (
        "POST",
        "http://h/v1/x",
        201,
        None,
    )
    assert first.headers == {"X-API-Key": "<key>", "Content-Type": "application/json"}
    assert first.body == '{"a": "<id>"}'
    assert first.saves == [("message.id", "m"), ("next_cursor", "c")]
    assert not first.later
    assert (second.status, second.code, second.later, second.body) == (
        404,
        "channel_not_found",
        True,
        "",
    )
    with pytest.raises(AssertionError, match="status"):
        parse("```http\nGET http://h/x\n```\nthen 200\n")


@pytest.mark.parametrize("path", DOCUMENTS)
async def test_every_example_runs_as_written(
    path: str, nursery: trio.Nursery, tmp_path: Path
) -> None:
    async with serving(nursery, tmp_path) as server:
        response = await server.http.get(path)
        assert response.status_code == 200
        examples = parse(response.text)
        if path in WITH_EXAMPLES:
            assert [e for e in examples if not e.later], f"{path} has no runnable example"
        # a fenced block the parser did not take would go unchecked
        assert response.text.count("```http") == len(examples)
        ran = await run_examples(server.http, server.url, examples)
        assert ran == len([e for e in examples if not e.later])
