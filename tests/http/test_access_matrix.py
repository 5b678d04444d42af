"""Who gets what from the access routes: a permission matrix built from the route table.

Every route registered by the access modules (channel admin, members,
invitations, access requests) must have a row in ``CASES``; the test
enumerates the app's router to prove it. Each row is called by four callers
(the owner, a member, an outsider, a member whose key was revoked) on an
open and a restricted channel, and on a channel (or invitation) that does
not exist, each in a freshly built world, and the exact status and error
code are checked against the rules of contract §0.7, §2.1, §2.5 and §3.4.
No answer to an outsider on a restricted channel may carry its messages.

The requests run in-process through the whole ASGI lane (Quart's test
client), so the hundreds of cells take seconds.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backchannel.http.api import Api
from backchannel.http.app import create_app
from backchannel.runtime.service import open_runtime
from tests.conftest import test_settings

ACCESS_MODULES = {
    "backchannel.http.channel_admin",
    "backchannel.http.members",
    "backchannel.http.invitations",
    "backchannel.http.access_requests",
}
SECRET = "the restricted payload 7f3a"
ROLES = ("owner", "member", "outsider", "revoked")
KINDS = ("open", "restricted", "missing")


@dataclass(frozen=True)
class Case:
    method: str
    pattern: str
    ok: int  # the owner's status
    body: dict[str, Any] | None = None
    owner_only: bool = True
    keyless_channel: bool = False  # resolves the channel without the key (§2.1)
    missing: str = "channel_not_found"


CASES = [
    Case("PATCH", "/v1/channels/<identifier>", 200, {"description": "new"}),
    Case("DELETE", "/v1/channels/<identifier>", 204),
    Case("POST", "/v1/channels/<identifier>/aliases", 201, {"alias": "matrix-alias"}),
    Case("GET", "/v1/channels/<identifier>/members", 200),
    Case("POST", "/v1/channels/<identifier>/members", 201, {"key_id": "bck_newmember"}),
    Case("DELETE", "/v1/channels/<identifier>/members/<member_key_id>", 200),
    Case("GET", "/v1/channels/<identifier>/events", 200),
    Case("POST", "/v1/channels/<identifier>/invitations", 201, {}),
    Case(
        "GET",
        "/v1/channel-invitations/<invitation_id>",
        200,
        owner_only=False,
        missing="invitation_not_found",
    ),
    Case("DELETE", "/v1/channel-invitations/<invitation_id>", 200, missing="invitation_not_found"),
    Case(
        "POST",
        "/v1/channels/<identifier>/access-requests",
        200,
        {"reason": "let me in"},
        owner_only=False,
        keyless_channel=True,
    ),
    Case("GET", "/v1/channels/<identifier>/access-requests", 200, keyless_channel=True),
    Case(
        "POST",
        "/v1/channels/<identifier>/access-requests/<request_id>/approve",
        200,
        keyless_channel=True,
    ),
    Case(
        "POST",
        "/v1/channels/<identifier>/access-requests/<request_id>/deny",
        200,
        keyless_channel=True,
    ),
]


def expected(case: Case, role: str, kind: str) -> tuple[int, str | None]:
    """The status and error code the rules give ``role`` on a ``kind`` channel."""
    if role == "revoked":
        return 401, "unauthorized"
    if kind == "missing":
        return 404, case.missing
    if not case.owner_only:
        if case.pattern.endswith("access-requests") and role == "outsider" and kind == "restricted":
            return 202, None
        return case.ok, None
    if role == "owner":
        return case.ok, None
    if role == "outsider" and kind == "restricted" and not case.keyless_channel:
        if "channel-invitations" not in case.pattern:
            return 403, "channel_access_denied"
    return 403, "forbidden"


@asynccontextmanager
async def in_process(tmp_path: Path) -> AsyncIterator[tuple[Any, Api]]:
    settings = test_settings(tmp_path, sandbox_enabled=False)
    async with open_runtime(settings, in_memory=True) as hub:
        app = create_app(hub)
        async with app.test_app() as test_app:
            yield test_app.test_client(), app.extensions["backchannel"]


async def test_every_access_route_has_a_row(tmp_path: Path) -> None:
    """The matrix covers exactly the routes the access modules register."""
    found = set()
    async with in_process(tmp_path) as (_client, api):
        for method, pattern in api.router:
            match = api.router.match(method, re.sub(r"<[a-z_]+>", "x", pattern))
            assert match is not None
            if match[0].fn.__module__ in ACCESS_MODULES:
                found.add((method, pattern))
    assert found == {(case.method, case.pattern) for case in CASES}


class World:
    """Callers and one channel set up for a single cell of the matrix."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.keys: dict[str, dict[str, str]] = {}
        self.key_ids: dict[str, str] = {}

    async def mint(self, role: str) -> None:
        minted = await self.client.post("/v1/keys", json={"agent_label": role})
        body = await minted.get_json()
        self.keys[role] = {"X-API-Key": body["key"]}
        self.key_ids[role] = body["key_id"]

    async def call(self, method: str, path: str, role: str, body: Any = None) -> Any:
        kw: dict[str, Any] = {"headers": self.keys[role]}
        if body is not None:
            kw["json"] = body
        return await self.client.open(path, method=method, **kw)

    async def setup(self, kind: str) -> dict[str, str]:
        for role in (*ROLES, "asker"):
            await self.mint(role)
        created = await self.call(
            "POST",
            "/v1/channels",
            "owner",
            {"name": "lane", "mode": "claimable", "access": "restricted"},
        )
        cid = (await created.get_json())["id"]
        for role in ("member", "revoked"):
            added = await self.call(
                "POST", f"/v1/channels/{cid}/members", "owner", {"key_id": self.key_ids[role]}
            )
            assert added.status_code == 201
        await self.call("POST", f"/v1/channels/{cid}/messages", "owner", {"content": SECRET})
        invitation = await self.call("POST", f"/v1/channels/{cid}/invitations", "owner", {})
        asked = await self.call("POST", f"/v1/channels/{cid}/access-requests", "asker", {})
        assert asked.status_code == 202
        if kind == "open":
            patched = await self.call("PATCH", f"/v1/channels/{cid}", "owner", {"access": "open"})
            assert patched.status_code == 200
        revoked = await self.call("DELETE", "/v1/keys/me", "revoked")
        assert revoked.status_code == 200
        params = {
            "identifier": cid,
            "member_key_id": self.key_ids["member"],
            "invitation_id": (await invitation.get_json())["id"],
            "request_id": (await asked.get_json())["request_id"],
        }
        if kind == "missing":
            params["identifier"] = "no-such-channel"
            params["invitation_id"] = "x" * 24
        return params


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.pattern}")
async def test_permission_matrix(case: Case, tmp_path: Path) -> None:
    failures = []
    for kind in KINDS:
        for role in ROLES:
            async with in_process(tmp_path / f"{kind}-{role}") as (client, _api):
                world = World(client)
                params = await world.setup(kind)
                path = case.pattern
                for name, value in params.items():
                    path = path.replace(f"<{name}>", value)
                response = await world.call(case.method, path, role, case.body)
                status, code = expected(case, role, kind)
                text = (await response.get_data()).decode()
                got_code = (await response.get_json() or {}).get("error") if text else None
                if (response.status_code, got_code) != (status, code):
                    failures.append((kind, role, response.status_code, got_code, status, code))
                if role in ("outsider", "revoked"):
                    assert SECRET not in text, (kind, role, text)
                if role == "outsider" and kind == "restricted" and case.owner_only:
                    assert "lane" not in text, (kind, role, text)
    assert failures == []
