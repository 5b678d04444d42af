"""Claims, leases, heartbeats, release, ack and retract (contract §2.6, §3.6, §3.7, §0.3).

Most tests run against the real server; the two that need time to pass
(lease lapse, message TTL) run the app in-process on trio's MockClock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import trio
import trio.testing

from backchannel.core.timefmt import parse_ts
from backchannel.http.app import create_app
from backchannel.runtime.service import open_runtime
from tests.conftest import Agent, Server, assert_error, test_settings


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def setup(server: Server, mode: str = "claimable") -> tuple[Agent, Agent, str, str]:
    """alice owns a channel with one message; bob is a second agent."""
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    channel = (await alice.channel("jobs", mode))["id"]
    message = (await alice.send(channel, "work"))["id"]
    return alice, bob, channel, message


async def live_message(agent: Agent, channel: str, message_id: str) -> dict[str, Any]:
    listed = ok(await agent.get(f"/v1/channels/{channel}/messages"))
    found = [m for m in listed["data"] if m["id"] == message_id]
    assert len(found) == 1
    message: dict[str, Any] = found[0]
    return message


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- plain claim ---------------------------------------------------------------


async def test_claim_then_same_actor_again_then_acknowledged(server: Server) -> None:
    alice, bob, channel, message = await setup(server)
    first = ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": "worker"}))
    assert first["status"] == "claimed"
    held = first["message"]
    assert held["claimed_by"]["name"] == "worker"
    assert held["claimed_by_key_id"] == bob.key_id
    assert held["claimed_at"] is not None
    assert (await live_message(alice, channel, message))["claimed_by"] == held["claimed_by"]

    # the same actor, by name or by id, gets 200 already_claimed
    again = ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": "worker"}))
    assert again["status"] == "already_claimed"
    assert again["message"]["claimed_by"] == held["claimed_by"]
    assert again["message"]["claimed_at"] == held["claimed_at"]
    by_id = ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": held["claimed_by"]["id"]}))
    assert by_id["status"] == "already_claimed"

    # another actor (even of the same key) gets 409 with no claimer details
    for agent, body in ((bob, {"actor": "other"}), (bob, {}), (alice, {})):
        lost = assert_error(
            await agent.post(f"/v1/messages/{message}/claim", body), 409, "already_claimed"
        )
        assert lost["message"] == "This message has already been claimed"
        assert set(lost) == {"error", "message", "request_id", "documentation_url"}

    # once any actor has acked, the holder's re-claim says already_acknowledged
    ok(await alice.post(f"/v1/messages/{message}/ack"))
    acked = ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": "worker"}))
    assert acked["status"] == "already_acknowledged"


async def test_claim_without_actor_uses_the_default_actor(server: Server) -> None:
    _alice, bob, _channel, message = await setup(server)
    claimed = ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": "   "}))
    holder = claimed["message"]["claimed_by"]
    assert holder["name"] == "bob"
    actor = ok(await bob.get(f"/v1/actors/{holder['id']}"))
    assert actor["owner_id"] == "bob"
    assert actor["created_by_key_id"] == bob.key_id
    # no body at all is the same actor
    again = await bob.http.post(f"/v1/messages/{message}/claim", headers={"X-API-Key": bob.key})
    assert ok(again)["status"] == "already_claimed"


async def test_claim_with_a_new_name_creates_the_actor(server: Server) -> None:
    _alice, bob, _channel, message = await setup(server)
    claimed = ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": "  fresh-name "}))
    holder = claimed["message"]["claimed_by"]
    assert holder["name"] == "fresh-name"
    actor = ok(await bob.get(f"/v1/actors/{holder['id']}"))
    assert actor["name"] == "fresh-name"
    assert actor["owner_id"] == "bob"
    assert actor["created_by_key_id"] == bob.key_id
    assert actor["description"] == ""
    assert actor["metadata"] == {}
    # names are not a lookup key for GET /v1/actors
    assert_error(await bob.get("/v1/actors/fresh-name"), 404, "actor_not_found")


async def test_claim_as_another_owners_actor_is_forbidden(server: Server) -> None:
    alice, bob, channel, message = await setup(server)
    alices = ok(await alice.post(f"/v1/messages/{message}/claim"))["message"]["claimed_by"]
    other = (await alice.send(channel, "second"))["id"]
    for path in (f"/v1/messages/{other}/claim", f"/v1/messages/{other}/claim-with-lease"):
        body = assert_error(await bob.post(path, {"actor": alices["id"]}), 403, "actor_forbidden")
        assert body["message"] == "You can only act as an actor your own key registered"
    assert_error(
        await bob.post(f"/v1/messages/{other}/ack", {"actor": alices["id"]}), 403, "actor_forbidden"
    )
    assert_error(
        await bob.post(f"/v1/messages/{message}/release", {"actor": alices["id"]}),
        403,
        "actor_forbidden",
    )
    untouched = await live_message(alice, channel, other)
    assert untouched["claimed_by"] is None
    assert untouched["acknowledged_by"] == []
    assert (await live_message(alice, channel, message))["claimed_by"] == alices


async def test_claim_errors(server: Server) -> None:
    alice, bob, _channel, _message = await setup(server)
    broadcast = (await alice.channel("news", "broadcast"))["id"]
    news = (await alice.send(broadcast, "hello"))["id"]
    secret = (await alice.channel("secret", "claimable", access="restricted"))["id"]
    hidden = (await alice.send(secret, "hidden"))["id"]
    unknown = str(uuid.uuid4())
    for verb in ("claim", "claim-with-lease", "release"):
        assert_error(await bob.post(f"/v1/messages/{unknown}/{verb}"), 404, "message_not_found")
        assert_error(await bob.post(f"/v1/messages/{news}/{verb}"), 409, "channel_not_claimable")
        assert_error(await bob.post(f"/v1/messages/{hidden}/{verb}"), 403, "channel_access_denied")
    assert_error(await bob.post(f"/v1/messages/{unknown}/ack"), 404, "message_not_found")
    assert_error(await bob.post(f"/v1/messages/{hidden}/ack"), 403, "channel_access_denied")
    # the owner of the restricted channel may claim in it
    assert ok(await alice.post(f"/v1/messages/{hidden}/claim"))["status"] == "claimed"
    # and ack works on broadcast channels
    assert ok(await bob.post(f"/v1/messages/{news}/ack"))["status"] == "acknowledged"


# -- leases --------------------------------------------------------------------------


async def test_claim_with_lease_and_heartbeat(server: Server) -> None:
    alice, bob, channel, message = await setup(server)
    leased = ok(
        await bob.post(
            f"/v1/messages/{message}/claim-with-lease", {"actor": "w", "lease_seconds": 30}
        )
    )
    assert set(leased) == {"lease_token", "expires_at", "message"}
    token = leased["lease_token"]
    uuid.UUID(token)
    held = leased["message"]
    assert held["claimed_by"]["name"] == "w"
    assert held["claimed_by_key_id"] == bob.key_id
    claimed_at = ts(held["claimed_at"])
    assert ts(leased["expires_at"]) - claimed_at == timedelta(seconds=30)
    # lease token and expiry never show on the message
    assert "lease_token" not in held
    assert "lease_expires_at" not in held

    beat = ok(await bob.post(f"/v1/leases/{token}/heartbeat", {"lease_seconds": 600}))
    assert set(beat) == {"lease_token", "expires_at"}
    assert beat["lease_token"] == token
    assert ts(beat["expires_at"]) - claimed_at >= timedelta(seconds=600)
    default = ok(await bob.post(f"/v1/leases/{token}/heartbeat"))
    # heartbeat sets now + lease_seconds (default 300); it does not add to the old expiry
    assert timedelta(seconds=300) <= ts(default["expires_at"]) - claimed_at < timedelta(seconds=400)

    # others cannot take it
    assert_error(
        await alice.post(f"/v1/messages/{message}/claim-with-lease"), 409, "already_claimed"
    )
    assert_error(await alice.post(f"/v1/messages/{message}/claim"), 409, "already_claimed")
    assert (await live_message(alice, channel, message))["claimed_by"]["name"] == "w"


async def test_same_actor_lease_claim_renews_the_lease(server: Server) -> None:
    _alice, bob, _channel, message = await setup(server)
    path = f"/v1/messages/{message}/claim-with-lease"
    first = ok(await bob.post(path, {"actor": "w", "lease_seconds": 30}))
    again = ok(await bob.post(path, {"actor": "w", "lease_seconds": 900}))
    assert again["lease_token"] == first["lease_token"]
    assert ts(again["expires_at"]) - ts(first["expires_at"]) >= timedelta(seconds=870)
    assert again["message"]["claimed_by"] == first["message"]["claimed_by"]
    assert ok(await bob.post(f"/v1/leases/{first['lease_token']}/heartbeat"))
    # a plain claim by the holder reports already_claimed and keeps the lease
    plain = ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": "w"}))
    assert plain["status"] == "already_claimed"
    assert ok(await bob.post(f"/v1/leases/{first['lease_token']}/heartbeat"))


async def test_lease_claim_after_a_plain_claim_by_the_same_actor(server: Server) -> None:
    _alice, bob, _channel, message = await setup(server)
    ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": "w"}))
    leased = ok(await bob.post(f"/v1/messages/{message}/claim-with-lease", {"actor": "w"}))
    assert leased["message"]["claimed_by"]["name"] == "w"
    assert ok(await bob.post(f"/v1/leases/{leased['lease_token']}/heartbeat"))


async def test_lease_seconds_bounds(server: Server) -> None:
    _alice, bob, _channel, message = await setup(server)
    path = f"/v1/messages/{message}/claim-with-lease"
    for value in (4, 3601, 0, -5, "300", 30.5, True, None, [30]):
        assert_error(await bob.post(path, {"lease_seconds": value}), 422, "invalid_lease_seconds")
    # checked before the message lookup
    assert_error(
        await bob.post(f"/v1/messages/{uuid.uuid4()}/claim-with-lease", {"lease_seconds": 1}),
        422,
        "invalid_lease_seconds",
    )
    leased = ok(await bob.post(path, {"lease_seconds": 5}))
    token = leased["lease_token"]
    assert ts(leased["expires_at"]) - ts(leased["message"]["claimed_at"]) == timedelta(seconds=5)
    for value in (4, 3601, "60", 1.5, False):
        assert_error(
            await bob.post(f"/v1/leases/{token}/heartbeat", {"lease_seconds": value}),
            422,
            "invalid_lease_seconds",
        )
    top = ok(await bob.post(f"/v1/leases/{token}/heartbeat", {"lease_seconds": 3600}))
    assert ts(top["expires_at"]) - ts(leased["expires_at"]) > timedelta(seconds=3000)


async def test_heartbeat_errors(server: Server) -> None:
    alice, bob, _channel, message = await setup(server)
    unknown = await bob.post(f"/v1/leases/{uuid.uuid4()}/heartbeat")
    body = assert_error(unknown, 410, "lease_expired")
    assert body["message"] == "Lease not found or already expired"
    assert_error(await bob.post("/v1/leases/not-a-token/heartbeat"), 410, "lease_expired")

    token = ok(await bob.post(f"/v1/messages/{message}/claim-with-lease"))["lease_token"]
    assert_error(await alice.post(f"/v1/leases/{token}/heartbeat"), 409, "lease_not_held")
    assert ok(await bob.post(f"/v1/leases/{token}/heartbeat"))


async def test_release_invalidates_the_lease_token(server: Server) -> None:
    alice, bob, channel, message = await setup(server)
    token = ok(await bob.post(f"/v1/messages/{message}/claim-with-lease", {"actor": "w"}))[
        "lease_token"
    ]
    released = ok(await bob.post(f"/v1/messages/{message}/release", {"actor": "w"}))
    assert released["status"] == "released"
    assert released["message"]["claimed_by"] is None
    assert released["message"]["claimed_by_key_id"] is None
    assert released["message"]["claimed_at"] is None
    assert_error(await bob.post(f"/v1/leases/{token}/heartbeat"), 410, "lease_expired")
    unclaimed = ok(
        await alice.get(f"/v1/channels/{channel}/messages", params={"status": "unclaimed"})
    )
    assert [m["id"] for m in unclaimed["data"]] == [message]
    # anyone can claim it now
    assert ok(await alice.post(f"/v1/messages/{message}/claim"))["status"] == "claimed"


async def test_release_errors(server: Server) -> None:
    alice, bob, _channel, message = await setup(server)
    body = assert_error(await bob.post(f"/v1/messages/{message}/release"), 409, "not_claimed")
    assert body["message"]
    ok(await bob.post(f"/v1/messages/{message}/claim", {"actor": "w"}))
    assert_error(
        await bob.post(f"/v1/messages/{message}/release", {"actor": "other"}), 403, "forbidden"
    )
    assert_error(await alice.post(f"/v1/messages/{message}/release"), 403, "forbidden")
    assert ok(await bob.post(f"/v1/messages/{message}/release", {"actor": "w"}))
    assert_error(
        await bob.post(f"/v1/messages/{message}/release", {"actor": "w"}), 409, "not_claimed"
    )


async def test_release_and_heartbeat_by_another_key_of_the_same_owner(server: Server) -> None:
    _alice, bob, _channel, message = await setup(server)
    token = ok(await bob.post(f"/v1/messages/{message}/claim-with-lease"))["lease_token"]
    assert ok(await bob.delete("/v1/keys/me"))["revoked"] is True
    bob2 = await server.agent("bob")  # same label, same owner, same default actor
    assert_error(await bob2.post(f"/v1/leases/{token}/heartbeat"), 409, "lease_not_held")
    assert_error(await bob2.post(f"/v1/messages/{message}/release"), 409, "lease_not_held")
    # the same actor row: a plain re-claim is already_claimed
    assert ok(await bob2.post(f"/v1/messages/{message}/claim"))["status"] == "already_claimed"


async def test_ack_by_the_holder_ends_the_lease(server: Server) -> None:
    alice, bob, channel, message = await setup(server)
    token = ok(await bob.post(f"/v1/messages/{message}/claim-with-lease", {"actor": "w"}))[
        "lease_token"
    ]
    # a bystander's ack does not end the holder's lease
    ok(await alice.post(f"/v1/messages/{message}/ack"))
    assert ok(await bob.post(f"/v1/leases/{token}/heartbeat"))
    acked = ok(await bob.post(f"/v1/messages/{message}/ack", {"actor": "w"}))
    assert acked["status"] == "acknowledged"
    assert [a["name"] for a in acked["message"]["acknowledged_by"]] == ["alice", "w"]
    assert_error(await bob.post(f"/v1/leases/{token}/heartbeat"), 410, "lease_expired")
    # the claim itself stays with the holder
    held = await live_message(alice, channel, message)
    assert held["claimed_by"]["name"] == "w"
    assert_error(await alice.post(f"/v1/messages/{message}/claim"), 409, "already_claimed")


# -- ack --------------------------------------------------------------------------------


async def test_ack_per_actor(server: Server) -> None:
    alice, bob, _channel, message = await setup(server)
    first = ok(await bob.post(f"/v1/messages/{message}/ack", {"actor": "reader"}))
    assert first["status"] == "acknowledged"
    assert first["message"]["claimed_by"] is None  # works on unclaimed messages
    entry = first["message"]["acknowledged_by"][0]
    assert set(entry) == {"id", "name", "occurred_at"}
    assert entry["name"] == "reader"
    again = ok(await bob.post(f"/v1/messages/{message}/ack", {"actor": "reader"}))
    assert again["status"] == "already_acknowledged"
    assert again["message"]["acknowledged_by"] == [entry]
    other = ok(await alice.post(f"/v1/messages/{message}/ack", {"metadata": {"ok": True}}))
    assert other["status"] == "acknowledged"
    assert [a["name"] for a in other["message"]["acknowledged_by"]] == ["reader", "alice"]
    assert_error(
        await bob.post(f"/v1/messages/{message}/ack", {"metadata": "x"}), 422, "invalid_object"
    )


# -- retract -----------------------------------------------------------------------------


async def test_retract(server: Server) -> None:
    alice, bob, channel, message = await setup(server)
    bobs = (await bob.send(channel, "bob's"))["id"]
    third = (await bob.send(channel, "third"))["id"]

    # only the author or the channel owner may retract
    carol = await server.agent("carol")
    assert_error(await carol.delete(f"/v1/messages/{bobs}"), 403, "forbidden")
    assert_error(await bob.delete(f"/v1/messages/{message}"), 403, "forbidden")
    assert ok(await bob.delete(f"/v1/messages/{bobs}")) == {"status": "retracted"}
    assert ok(await alice.delete(f"/v1/messages/{third}")) == {"status": "retracted"}

    # a claimed message cannot be retracted
    ok(await bob.post(f"/v1/messages/{message}/claim"))
    assert_error(await alice.delete(f"/v1/messages/{message}"), 409, "message_claimed")
    ok(await bob.post(f"/v1/messages/{message}/release"))

    for gone in (bobs, third):
        assert_error(await bob.delete(f"/v1/messages/{gone}"), 404, "message_not_found")
        for verb in ("claim", "claim-with-lease", "release", "ack"):
            assert_error(await bob.post(f"/v1/messages/{gone}/{verb}"), 404, "message_not_found")
    assert_error(await bob.delete(f"/v1/messages/{uuid.uuid4()}"), 404, "message_not_found")
    listed = ok(await alice.get(f"/v1/channels/{channel}/messages"))
    assert [m["id"] for m in listed["data"]] == [message]


async def test_retract_in_a_restricted_channel(server: Server) -> None:
    alice = await server.agent("alice")
    bob = await server.agent("bob")
    secret = (await alice.channel("secret", "claimable", access="restricted"))["id"]
    hidden = (await alice.send(secret, "hidden"))["id"]
    assert_error(await bob.delete(f"/v1/messages/{hidden}"), 403, "channel_access_denied")
    assert ok(await alice.delete(f"/v1/messages/{hidden}")) == {"status": "retracted"}


# -- time: in-process on the MockClock -------------------------------------------------

Request = Callable[..., Awaitable[Any]]


@asynccontextmanager
async def in_process(tmp_path: Path) -> AsyncIterator[Any]:
    """The app over an in-memory runtime, driven by quart's test client."""
    async with open_runtime(test_settings(tmp_path), in_memory=True) as hub:
        app = create_app(hub)
        async with app.test_app() as test_app:
            yield test_app.test_client()


async def _json(response: Any) -> Any:
    return await response.get_json()


async def test_an_expired_lease_returns_the_message_on_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with in_process(tmp_path) as client:
        keys = []
        for label in ("alice", "bob"):
            minted = await client.post("/v1/keys", json={"agent_label": label})
            keys.append({"X-API-Key": (await _json(minted))["key"]})
        alice, bob = keys
        created = await client.post(
            "/v1/channels", json={"name": "c", "mode": "claimable"}, headers=alice
        )
        channel = (await _json(created))["id"]
        posted = await client.post(
            f"/v1/channels/{channel}/messages", json={"content": "x"}, headers=alice
        )
        message = (await _json(posted))["message"]["id"]
        leased = await client.post(
            f"/v1/messages/{message}/claim-with-lease",
            json={"actor": "w", "lease_seconds": 5},
            headers=bob,
        )
        assert leased.status_code == 200
        token = (await _json(leased))["lease_token"]
        start = trio.current_time()

        await trio.sleep(4.9)
        still = await client.post(
            f"/v1/leases/{token}/heartbeat", json={"lease_seconds": 10}, headers=bob
        )
        assert still.status_code == 200
        extended = parse_ts((await _json(still))["expires_at"])
        leased_until = parse_ts((await _json(leased))["expires_at"])
        assert extended is not None
        assert leased_until is not None
        assert extended - leased_until == 9_900_000  # now (4.9 s on) + 10 s

        await trio.sleep(5)  # past the first deadline, before the new one: still held
        held = await client.get(
            f"/v1/channels/{channel}/messages", query_string={"status": "claimed"}, headers=alice
        )
        [row] = (await _json(held))["data"]
        assert (row["id"], row["claimed_by"]["name"]) == (message, "w")
        again = await client.post(
            f"/v1/leases/{token}/heartbeat", json={"lease_seconds": 300}, headers=bob
        )
        assert again.status_code == 200  # extended to now + 300 s
        await trio.sleep(300.5)
        assert trio.current_time() - start > 310

        listed = await client.get(
            f"/v1/channels/{channel}/messages", query_string={"status": "unclaimed"}, headers=alice
        )
        data = (await _json(listed))["data"]
        assert [m["id"] for m in data] == [message]
        assert data[0]["claimed_by"] is None
        assert data[0]["claimed_by_key_id"] is None
        late = await client.post(f"/v1/leases/{token}/heartbeat", json={}, headers=bob)
        assert late.status_code == 410
        assert (await _json(late))["error"] == "lease_expired"
        taken = await client.post(f"/v1/messages/{message}/claim", json={}, headers=alice)
        assert taken.status_code == 200
        assert (await _json(taken))["status"] == "claimed"


async def test_an_expired_message_leaves_for_history_on_time(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async with in_process(tmp_path) as client:
        minted = await client.post("/v1/keys", json={"agent_label": "alice"})
        alice = {"X-API-Key": (await _json(minted))["key"]}
        created = await client.post(
            "/v1/channels",
            json={"name": "c", "mode": "claimable", "ttl_seconds": 300},
            headers=alice,
        )
        channel = (await _json(created))["id"]
        posted = await client.post(
            f"/v1/channels/{channel}/messages", json={"content": "x"}, headers=alice
        )
        message = (await _json(posted))["message"]["id"]
        await trio.sleep(300.001)

        listed = await client.get(f"/v1/channels/{channel}/messages", headers=alice)
        assert (await _json(listed))["data"] == []
        archived = await client.get(f"/v1/channels/{channel}/history", headers=alice)
        data = (await _json(archived))["data"]
        assert [m["id"] for m in data] == [message]
        assert data[0]["active"] is False
        for verb in ("claim", "claim-with-lease", "release", "ack"):
            refused = await client.post(f"/v1/messages/{message}/{verb}", json={}, headers=alice)
            assert refused.status_code == 410, verb
            assert (await _json(refused))["error"] == "message_expired"
