"""redis-py's asyncio client against a real redis-server, on rose and on stdlib asyncio.

Pipelines (with MULTI/EXEC and WATCH), pub/sub, the unix socket, and BLPOP: timing out with
None, satisfied by a push from another connection, and cancelled; connections the server
closes, and TLS. Every test checks what came
back, not only that nothing raised.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis
import trustme
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError
from servers import redis_server  # noqa: F401  (the session's server, a fixture)

from conftest import is_impl_loop

TRANSPORTS = ["tcp", "unix"]


def run(impl, loop_factory, fn, *args):
    """Run ``fn(*args)`` on a fresh loop of ``impl`` (checked to be that impl's loop)."""

    async def main():
        assert is_impl_loop(impl, asyncio.get_running_loop())
        return await fn(*args)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def client(server, transport="tcp"):
    if transport == "unix":
        return aioredis.Redis(unix_socket_path=server.unix_socket, decode_responses=True)
    return aioredis.Redis(host=server.host, port=server.port, decode_responses=True)


async def wait_blocked(observer, n):
    """Wait until the server has ``n`` clients blocked (in BLPOP)."""
    for _ in range(500):
        if (await observer.info("clients"))["blocked_clients"] == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {n} blocked clients")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redis_pipeline(impl, loop_factory, redis_server, transport):  # noqa: F811
    key = f"pipe:{impl}:{transport}"

    async def main():
        r = client(redis_server, transport)
        other = client(redis_server)
        try:
            # MULTI/EXEC: the replies of every queued command, in order.
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(key).set(key, 1).incr(key).incrby(key, 10).get(key)
                assert await pipe.execute() == [0, True, 2, 12, "12"]
            # Without a transaction: many commands in one round trip.
            async with r.pipeline(transaction=False) as pipe:
                for i in range(500):
                    pipe.rpush(f"{key}:list", f"item {i}")
                pipe.lrange(f"{key}:list", 0, -1)
                replies = await pipe.execute()
            assert replies[:500] == list(range(1, 501))
            assert replies[500] == [f"item {i}" for i in range(500)]
            # WATCH: a change from another connection aborts the transaction.
            async with r.pipeline(transaction=True) as pipe:
                await pipe.watch(key)
                assert await pipe.get(key) == "12"  # immediate mode while watching
                await other.set(key, "changed elsewhere")
                pipe.multi()
                pipe.set(key, "lost update")
                with pytest.raises(WatchError):
                    await pipe.execute()
            assert await r.get(key) == "changed elsewhere"
            assert await r.delete(key, f"{key}:list") == 2
        finally:
            await r.aclose()
            await other.aclose()

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redis_pubsub(impl, loop_factory, redis_server, transport):  # noqa: F811
    channel = f"news:{impl}:{transport}"

    async def main():
        r = client(redis_server, transport)
        publisher = client(redis_server)
        try:
            async with r.pubsub() as pubsub:
                await pubsub.subscribe(channel)
                await pubsub.psubscribe(f"pattern:{impl}:{transport}:*")
                confirmations = [await pubsub.get_message(timeout=5) for _ in range(2)]
                assert [(m["type"], m["data"]) for m in confirmations] == [
                    ("subscribe", 1),
                    ("psubscribe", 2),
                ]

                async def receive(n):
                    got = []
                    while len(got) < n:
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=5
                        )
                        assert message is not None, f"only {got} arrived"
                        got.append((message["type"], message["channel"], message["data"]))
                    return got

                receiving = asyncio.create_task(receive(40))
                await asyncio.sleep(0.05)  # let the subscriber wait on its socket
                sent = []
                for i in range(20):
                    assert await publisher.publish(channel, f"plain {i}") == 1
                    sent.append(("message", channel, f"plain {i}"))
                    target = f"pattern:{impl}:{transport}:{i}"
                    assert await publisher.publish(target, f"by pattern {i}") == 1
                    sent.append(("pmessage", target, f"by pattern {i}"))
                assert await receiving == sent
                # After unsubscribing, a publish reaches nobody.
                await pubsub.unsubscribe(channel)
                await pubsub.punsubscribe()
                left = [await pubsub.get_message(timeout=5) for _ in range(2)]
                assert sorted(m["type"] for m in left) == ["punsubscribe", "unsubscribe"]
                assert await publisher.publish(channel, "nobody") == 0
                assert await pubsub.get_message(timeout=0.1) is None
        finally:
            await r.aclose()
            await publisher.aclose()

    run(impl, loop_factory, main)


def test_redis_unix_socket(impl, loop_factory, redis_server):  # noqa: F811
    key = f"unix:{impl}"
    big = "".join(chr(ord("a") + i % 26) for i in range(1 << 20))  # 1 MiB, in many reads

    async def main():
        unix = client(redis_server, "unix")
        tcp = client(redis_server, "tcp")
        try:
            assert await unix.ping() is True
            info = await unix.client_info()
            assert info["addr"].startswith(redis_server.unix_socket)
            assert (await tcp.client_info())["laddr"] == f"127.0.0.1:{redis_server.port}"
            # One server behind both: what one writes the other reads.
            assert await unix.set(key, big) is True
            assert await tcp.get(key) == big
            assert await tcp.append(key, "!") == len(big) + 1
            assert await unix.getrange(key, len(big) - 3, -1) == big[-3:] + "!"
            # Concurrent commands on one client (its pool opens more connections).
            got = await asyncio.gather(*(unix.incr(f"{key}:n") for _ in range(50)))
            assert sorted(got) == list(range(1, 51))
            assert await unix.delete(key, f"{key}:n") == 2
        finally:
            await unix.aclose()
            await tcp.aclose()

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redis_blpop_timeout(impl, loop_factory, redis_server, transport):  # noqa: F811
    key = f"empty:{impl}:{transport}"

    async def main():
        r = client(redis_server, transport)
        try:
            t0 = time.monotonic()
            assert await r.blpop([key], timeout=0.3) is None
            elapsed = time.monotonic() - t0
            assert 0.25 <= elapsed < 5, elapsed
            # A client-side timeout around a BLPOP that would wait forever: the connection
            # is dropped, and the client keeps working.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(r.blpop([key], timeout=0), 0.2)
            assert await r.ping() is True
            assert await r.rpush(key, "now there") == 1
            assert await r.blpop([key], timeout=1) == (key, "now there")
        finally:
            await r.aclose()

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redis_blpop_pushed(impl, loop_factory, redis_server, transport):  # noqa: F811
    key = f"queue:{impl}:{transport}"

    async def main():
        waiter = client(redis_server, transport)
        pusher = client(redis_server)
        try:
            await pusher.delete(key)
            before = (await pusher.info("clients"))["blocked_clients"]
            popping = asyncio.create_task(waiter.blpop([f"{key}:other", key], timeout=10))
            await wait_blocked(pusher, before + 1)  # the server holds the BLPOP
            t0 = time.monotonic()
            assert await pusher.rpush(key, "first", "second") == 2
            assert await popping == (key, "first")
            assert time.monotonic() - t0 < 5
            assert await pusher.lrange(key, 0, -1) == ["second"]
            assert await pusher.delete(key) == 1
        finally:
            await waiter.aclose()
            await pusher.aclose()

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redis_connection_killed_by_server(impl, loop_factory, redis_server, transport):  # noqa: F811
    async def main():
        r = client(redis_server, transport)
        admin = client(redis_server)
        try:
            old = await r.client_id()
            assert await admin.client_kill_filter(_id=old) == 1
            # The client sees the closed connection and reconnects for the next command.
            assert await r.ping() is True
            new = await r.client_id()
            assert new != old
            clients = {int(c["id"]) for c in await admin.client_list()}
            assert new in clients and old not in clients
        finally:
            await r.aclose()
            await admin.aclose()

    run(impl, loop_factory, main)


def test_redis_tls(impl, loop_factory, redis_server):  # noqa: F811
    key = f"tls:{impl}"
    big = "".join(chr(ord("A") + i % 26) for i in range(1 << 20))

    def tls_client(**ca):
        return aioredis.Redis(
            host=redis_server.host,
            port=redis_server.tls_port,
            ssl=True,
            decode_responses=True,
            **ca,
        )

    async def main():
        r = tls_client(ssl_ca_certs=redis_server.ca_file)
        plain = client(redis_server)
        try:
            assert await r.ping() is True
            assert (await r.client_info())["laddr"] == f"127.0.0.1:{redis_server.tls_port}"
            assert await r.set(key, big) is True
            assert await plain.get(key) == big
            async with r.pipeline(transaction=False) as pipe:
                for _ in range(200):
                    pipe.incr(f"{key}:n")
                assert await pipe.execute() == list(range(1, 201))
            async with r.pubsub() as pubsub:
                await pubsub.subscribe(f"{key}:ch")
                assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"
                for i in range(5):
                    assert await plain.publish(f"{key}:ch", f"over tls {i}") == 1
                got = [await pubsub.get_message(timeout=5) for _ in range(5)]
                assert [m["data"] for m in got] == [f"over tls {i}" for i in range(5)]
            assert await r.blpop([f"{key}:empty"], timeout=0.2) is None
            assert await r.delete(key, f"{key}:n") == 2
        finally:
            await r.aclose()
            await plain.aclose()
        # A certificate that another CA signed is refused.
        # (No retries: redis-py would retry the handshake with backoff for 4 s.)
        stranger = tls_client(
            ssl_ca_data=trustme.CA().cert_pem.bytes().decode(), retry=Retry(NoBackoff(), 0)
        )
        try:
            with pytest.raises(RedisConnectionError, match="certificate verify failed"):
                await stranger.ping()
        finally:
            await stranger.aclose()

    run(impl, loop_factory, main)
