"""asyncpg and psycopg 3 (async) against a real PostgreSQL, on rose and on stdlib asyncio.

Pools, COPY in and out, LISTEN/NOTIFY and query cancellation, over TCP on loopback and over
the server's unix socket; large values, sessions the server ends, and TLS. Every test checks what came back, not only that nothing raised.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import ssl
import time

import asyncpg
import psycopg
import psycopg_pool
import pytest
import trustme
from servers import postgres_server  # noqa: F401  (the session's server, a fixture)

from conftest import is_impl_loop, pattern

TRANSPORTS = ["tcp", "unix"]

# Names with what COPY's text and CSV formats must escape or quote.
TRICKY = ["plain", "tab\there", "new\nline", 'quote " and , comma', "back\\slash", "", "é ü 漢"]


def run(impl, loop_factory, fn, *args):
    """Run ``fn(*args)`` on a fresh loop of ``impl`` (checked to be that impl's loop)."""

    async def main():
        assert is_impl_loop(impl, asyncio.get_running_loop())
        return await fn(*args)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def expected_server_addr(transport):
    """What ``inet_server_addr()`` says: the loopback address over TCP, NULL over a unix socket."""
    return "127.0.0.1" if transport == "tcp" else None


async def wait_active(conn, pid, query_prefix):
    """Wait until the server shows backend ``pid`` running a query that starts so."""
    for _ in range(200):
        row = await conn.fetchrow("select state, query from pg_stat_activity where pid = $1", pid)
        if row is not None and row["state"] == "active" and row["query"].startswith(query_prefix):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never ran {query_prefix!r}")


async def wait_idle(conn, pid):
    """Wait until backend ``pid`` is idle: its cancelled query is over on the server too."""
    for _ in range(200):
        if await conn.fetchval("select state from pg_stat_activity where pid = $1", pid) == "idle":
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} still busy")


async def until(predicate, what):
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never {what}")


async def terminate(admin, pids):
    """End the server sessions ``pids`` (pg_terminate_backend); wait until they are gone."""
    ended = await admin.fetchval(
        "select count(*) filter (where pg_terminate_backend(pid)) from unnest($1::int[]) pid",
        list(pids),
    )
    assert ended == len(pids)
    for _ in range(500):
        left = await admin.fetchval(
            "select count(*) from pg_stat_activity where pid = any($1::int[])", list(pids)
        )
        if left == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"sessions {pids} still there")


# --------------------------------------------------------------------------
# asyncpg
# --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_asyncpg_pool(impl, loop_factory, postgres_server, transport):  # noqa: F811
    dsn = postgres_server.dsn(unix=transport == "unix")
    table = f"asyncpg_pool_{impl}_{transport}"

    async def main():
        async with asyncpg.create_pool(dsn, min_size=2, max_size=4) as pool:
            assert await pool.fetchval("select host(inet_server_addr())") == (
                expected_server_addr(transport)
            )
            # Four sessions at once, each holding its connection until all four have one.
            barrier = asyncio.Barrier(4)

            async def hold():
                async with pool.acquire() as conn:
                    pid = await conn.fetchval("select pg_backend_pid()")
                    await barrier.wait()
                    return pid

            pids = await asyncio.gather(*(hold() for _ in range(4)))
            assert len(set(pids)) == 4
            # More concurrent queries than connections: each gets its own answer.
            got = await asyncio.gather(*(pool.fetchval("select $1::int * 2", i) for i in range(60)))
            assert got == [2 * i for i in range(60)]
            # Transactions on a pool connection: committed, and rolled back on an error.
            await pool.execute(f"drop table if exists {table}")
            await pool.execute(f"create table {table} (k int primary key, v text)")
            async with pool.acquire() as conn:
                async with conn.transaction():
                    await conn.executemany(
                        f"insert into {table} values ($1, $2)", [(i, str(i)) for i in range(100)]
                    )
                with pytest.raises(asyncpg.UniqueViolationError):
                    async with conn.transaction():
                        await conn.execute(f"insert into {table} values (1000, 'new')")
                        await conn.execute(f"insert into {table} values (1, 'duplicate')")
            row = await pool.fetchrow(f"select count(*) as n, sum(k) as s from {table}")
            assert (row["n"], row["s"]) == (100, sum(range(100)))
            await pool.execute(f"drop table {table}")

    run(impl, loop_factory, main)


def test_asyncpg_copy(impl, loop_factory, postgres_server):  # noqa: F811
    records = [(i, TRICKY[i % len(TRICKY)] + str(i), i / 4) for i in range(3000)]
    extra = [(i, f"csv {i}", i + 0.5) for i in range(3000, 3500)]

    async def main():
        conn = await asyncpg.connect(postgres_server.dsn())
        try:
            await conn.execute("create temp table c (id int, name text, score float8)")
            # COPY IN: binary records, then CSV from a file-like source.
            assert await conn.copy_records_to_table("c", records=records) == "COPY 3000"
            source = io.BytesIO("".join(f"{i},{n},{s}\n" for i, n, s in extra).encode())
            assert await conn.copy_to_table("c", source=source, format="csv") == "COPY 500"
            # COPY OUT, streamed to a coroutine in chunks, as CSV.
            chunks = []

            async def sink(data):
                chunks.append(data)

            status = await conn.copy_from_query(
                "select id, name, score from c order by id", output=sink, format="csv"
            )
            assert status == "COPY 3500"
            out = list(csv.reader(io.StringIO(b"".join(chunks).decode(), newline="")))
            assert [(int(i), n, float(s)) for i, n, s in out] == records + extra
            # COPY OUT of a table in text format, into a file-like object.
            sink_file = io.BytesIO()
            assert await conn.copy_from_table("c", columns=["id"], output=sink_file) == "COPY 3500"
            assert sorted(map(int, sink_file.getvalue().split())) == list(range(3500))
        finally:
            await conn.close()

    run(impl, loop_factory, main)


def test_asyncpg_listen_notify(impl, loop_factory, postgres_server):  # noqa: F811
    channel = f"asyncpg_{impl}"

    async def main():
        listener = await asyncpg.connect(postgres_server.dsn())
        sender = await asyncpg.connect(postgres_server.dsn(unix=True))
        try:
            got = asyncio.Queue()
            loop = asyncio.get_running_loop()

            def on_notify(conn, pid, chan, payload):
                assert asyncio.get_running_loop() is loop
                got.put_nowait((conn is listener, pid, chan, payload))

            await listener.add_listener(channel, on_notify)
            pid = sender.get_server_pid()
            for i in range(20):
                await sender.execute(f"select pg_notify('{channel}', 'message {i}')")
            async with sender.transaction():  # delivered at commit, in order
                await sender.execute(f"notify {channel}, 'in a transaction 1'")
                await sender.execute(f"notify {channel}, 'in a transaction 2'")
            want = [f"message {i}" for i in range(20)] + [
                "in a transaction 1",
                "in a transaction 2",
            ]
            received = [await asyncio.wait_for(got.get(), 10) for _ in want]
            assert received == [(True, pid, channel, payload) for payload in want]
            # A rolled-back transaction notifies nobody; after removal, nothing arrives.
            tr = sender.transaction()
            await tr.start()
            await sender.execute(f"notify {channel}, 'rolled back'")
            await tr.rollback()
            await listener.remove_listener(channel, on_notify)
            await sender.execute(f"notify {channel}, 'after remove'")
            assert await listener.fetchval("select 1") == 1
            await asyncio.sleep(0.05)
            assert got.empty()
        finally:
            await listener.close()
            await sender.close()

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_asyncpg_cancel(impl, loop_factory, postgres_server, transport):  # noqa: F811
    async def main():
        conn = await asyncpg.connect(postgres_server.dsn(unix=transport == "unix"))
        watcher = await asyncpg.connect(postgres_server.dsn())
        try:
            pid = conn.get_server_pid()
            # asyncio.wait_for: the query is cancelled on the server, the connection works.
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.fetchval("select pg_sleep(30)"), 0.3)
            assert await conn.fetchval("select $1::int + 1", 41) == 42
            await wait_idle(watcher, pid)
            # Task.cancel while the server is running the query.
            task = asyncio.create_task(conn.fetchval("select pg_sleep(30), 'cancel me'"))
            await wait_active(watcher, pid, "select pg_sleep(30), 'cancel me'")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()
            assert await conn.fetchval("select 'usable again'") == "usable again"
            await wait_idle(watcher, pid)
            # A query that runs to its end inside a timeout still returns its result.
            assert await asyncio.wait_for(conn.fetchval("select 7 from pg_sleep(0.05)"), 10) == 7
            assert time.monotonic() - t0 < 20  # no 30 s sleep ran to its end
        finally:
            await conn.close()
            await watcher.close()

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_asyncpg_large_values(impl, loop_factory, postgres_server, transport):  # noqa: F811
    blob = pattern(4 << 20)  # 4 MiB each way: many reads, and writes that must wait

    async def main():
        conn = await asyncpg.connect(postgres_server.dsn(unix=transport == "unix"))
        try:
            assert await conn.fetchval("select $1::bytea", blob) == blob
            assert (
                await conn.fetchval("select md5($1::bytea)", blob) == hashlib.md5(blob).hexdigest()
            )
            rows = await conn.fetch(
                "select g, repeat('x', 200) as pad from generate_series(1, 20000) g"
            )
            assert [r["g"] for r in rows] == list(range(1, 20001))
            assert all(r["pad"] == "x" * 200 for r in rows)
            # A server-side cursor, fetched in batches.
            async with conn.transaction():
                seen = [
                    r[0] async for r in conn.cursor("select generate_series(1, 5000)", prefetch=300)
                ]
            assert seen == list(range(1, 5001))
        finally:
            await conn.close()

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_asyncpg_session_ended_by_server(impl, loop_factory, postgres_server, transport):  # noqa: F811
    dsn = postgres_server.dsn(unix=transport == "unix")

    async def main():
        admin = await asyncpg.connect(postgres_server.dsn())
        conn = await asyncpg.connect(dsn)
        try:
            # The server ends an idle session: the loop reports the end, the connection closes.
            await terminate(admin, [conn.get_server_pid()])
            await until(conn.is_closed, "closed")
            with pytest.raises(asyncpg.InterfaceError, match="connection is closed"):
                await conn.fetchval("select 1")
            # A pool replaces the connections the server ended.
            async with asyncpg.create_pool(dsn, min_size=2, max_size=2) as pool:
                held = [await pool.acquire() for _ in range(2)]
                old = {await c.fetchval("select pg_backend_pid()") for c in held}
                await terminate(admin, old)

                def ended(proxy):
                    try:
                        return proxy.is_closed()
                    except asyncpg.InterfaceError:  # the pool released it on its own
                        return True

                await until(lambda: all(ended(c) for c in held), "closed")
                for c in held:
                    await pool.release(c)  # a no-op for one already released
                barrier = asyncio.Barrier(2)

                async def pid():
                    async with pool.acquire() as c:
                        await barrier.wait()
                        return await c.fetchval("select pg_backend_pid()")

                new = set(await asyncio.gather(pid(), pid()))
                assert len(new) == 2 and not new & old
        finally:
            await conn.close()
            await admin.close()

    run(impl, loop_factory, main)


def test_asyncpg_tls(impl, loop_factory, postgres_server):  # noqa: F811
    dsn = postgres_server.dsn(tls=True)  # verify-full, against the test CA
    blob = pattern(2 << 20)
    in_tls = "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"

    async def main():
        conn = await asyncpg.connect(dsn)
        try:
            row = await conn.fetchrow(in_tls)
            assert row["ssl"] is True and row["version"].startswith("TLSv1.")
            assert await conn.fetchval("select $1::bytea", blob) == blob
            # Cancellation on a TLS session (the cancel request is a connection of its own).
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.fetchval("select pg_sleep(30)"), 0.3)
            assert await conn.fetchval("select 'after cancel'") == "after cancel"
        finally:
            await conn.close()
        async with asyncpg.create_pool(dsn, min_size=2, max_size=2) as pool:
            got = await asyncio.gather(*(pool.fetchval(in_tls) for _ in range(10)))
            assert got == [True] * 10
        # A certificate that another CA signed is refused.
        ctx = ssl.create_default_context()
        trustme.CA().configure_trust(ctx)
        server = postgres_server
        with pytest.raises(ssl.SSLCertVerificationError):
            await asyncpg.connect(host=server.host, port=server.port, user=server.user, ssl=ctx)

    run(impl, loop_factory, main)


# --------------------------------------------------------------------------
# psycopg 3 (async)
# --------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_psycopg_pool(impl, loop_factory, postgres_server, transport):  # noqa: F811
    dsn = postgres_server.dsn(unix=transport == "unix")
    table = f"psycopg_pool_{impl}_{transport}"

    async def main():
        pool = psycopg_pool.AsyncConnectionPool(dsn, min_size=2, max_size=4, open=False)
        await pool.open(wait=True, timeout=20)
        try:
            async with pool.connection() as conn:
                cur = await conn.execute("select host(inet_server_addr())")
                assert await cur.fetchone() == (expected_server_addr(transport),)
            barrier = asyncio.Barrier(4)

            async def hold():
                async with pool.connection() as conn:
                    pid = conn.info.backend_pid
                    await barrier.wait()
                    return pid

            pids = await asyncio.gather(*(hold() for _ in range(4)))
            assert len(set(pids)) == 4

            async def double(i):
                async with pool.connection() as conn:
                    cur = await conn.execute("select %s::int * 2", (i,))
                    return (await cur.fetchone())[0]

            assert await asyncio.gather(*(double(i) for i in range(60))) == [
                2 * i for i in range(60)
            ]
            async with pool.connection() as conn:  # commits at exit
                await conn.execute(f"drop table if exists {table}")
                await conn.execute(f"create table {table} (k int primary key, v text)")
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"insert into {table} values (%s, %s)", [(i, str(i)) for i in range(100)]
                    )
            with pytest.raises(psycopg.errors.UniqueViolation):
                async with pool.connection() as conn:  # rolls back at exit on an error
                    await conn.execute(f"insert into {table} values (1000, 'new')")
                    await conn.execute(f"insert into {table} values (1, 'duplicate')")
            async with pool.connection() as conn:
                cur = await conn.execute(f"select count(*), sum(k) from {table}")
                assert await cur.fetchone() == (100, sum(range(100)))
                await conn.execute(f"drop table {table}")
            stats = pool.get_stats()
            assert stats["pool_max"] == 4 and stats["requests_num"] >= 60 + 4 + 4
        finally:
            await pool.close()
        assert pool.closed

    run(impl, loop_factory, main)


def test_psycopg_copy(impl, loop_factory, postgres_server):  # noqa: F811
    records = [(i, TRICKY[i % len(TRICKY)] + str(i)) for i in range(3000)]

    async def main():
        async with await psycopg.AsyncConnection.connect(postgres_server.dsn()) as conn:
            async with conn.cursor() as cur:
                await cur.execute("create temp table c (id int, name text)")
                # COPY IN, row by row (psycopg escapes), then raw blocks of text format.
                async with cur.copy("copy c (id, name) from stdin") as copy:
                    for record in records:
                        await copy.write_row(record)
                assert cur.rowcount == 3000
                async with cur.copy("copy c (id, name) from stdin") as copy:
                    for i in range(3000, 3500, 100):
                        await copy.write("".join(f"{j}\traw {j}\n" for j in range(i, i + 100)))
                assert cur.rowcount == 500
                # COPY OUT as typed rows, then as raw CSV blocks.
                async with cur.copy("copy (select id, name from c order by id) to stdout") as copy:
                    copy.set_types(["int4", "text"])
                    rows = [row async for row in copy.rows()]
                assert rows == records + [(j, f"raw {j}") for j in range(3000, 3500)]
                async with cur.copy(
                    "copy (select id, name from c where id < 3000 order by id) to stdout (format csv)"
                ) as copy:
                    blocks = [bytes(block) async for block in copy]
                out = list(csv.reader(io.StringIO(b"".join(blocks).decode(), newline="")))
                assert [(int(i), n) for i, n in out] == records
            await conn.commit()

    run(impl, loop_factory, main)


def test_psycopg_listen_notify(impl, loop_factory, postgres_server):  # noqa: F811
    channel = f"psycopg_{impl}"
    want = [f"message {i}" for i in range(20)]

    async def main():
        connect = psycopg.AsyncConnection.connect
        async with (
            await connect(postgres_server.dsn(), autocommit=True) as listener,
            await connect(postgres_server.dsn(unix=True), autocommit=True) as sender,
        ):
            await listener.execute(f"listen {channel}")

            async def receive():
                gen = listener.notifies(timeout=10, stop_after=len(want))
                return [(n.pid, n.channel, n.payload) async for n in gen]

            receiving = asyncio.create_task(receive())
            await asyncio.sleep(0.05)  # let the listener wait on its socket
            for payload in want:
                await sender.execute("select pg_notify(%s, %s)", (channel, payload))
            pid = sender.info.backend_pid
            assert await receiving == [(pid, channel, payload) for payload in want]
            # After UNLISTEN nothing arrives: the generator times out empty.
            await listener.execute(f"unlisten {channel}")
            await sender.execute("select pg_notify(%s, 'late')", (channel,))
            assert [n async for n in listener.notifies(timeout=0.2)] == []

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_psycopg_cancel(impl, loop_factory, postgres_server, transport):  # noqa: F811
    async def main():
        watcher = await asyncpg.connect(postgres_server.dsn())
        conn = await psycopg.AsyncConnection.connect(
            postgres_server.dsn(unix=transport == "unix"), autocommit=True
        )
        try:
            pid = conn.info.backend_pid
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.execute("select pg_sleep(30)"), 0.3)
            cur = await conn.execute("select %s::int + 1", (41,))
            assert await cur.fetchone() == (42,)
            await wait_idle(watcher, pid)
            task = asyncio.create_task(conn.execute("select pg_sleep(30), 'cancel me'"))
            await wait_active(watcher, pid, "select pg_sleep(30), 'cancel me'")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()
            cur = await conn.execute("select 'usable again'")
            assert await cur.fetchone() == ("usable again",)
            await wait_idle(watcher, pid)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert time.monotonic() - t0 < 20  # no 30 s sleep ran to its end
        finally:
            await conn.close()
            await watcher.close()

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_psycopg_large_values(impl, loop_factory, postgres_server, transport):  # noqa: F811
    blob = pattern(4 << 20)

    async def main():
        dsn = postgres_server.dsn(unix=transport == "unix")
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            cur = await conn.execute("select %b::bytea, md5(%b::bytea)", (blob, blob))
            assert await cur.fetchone() == (blob, hashlib.md5(blob).hexdigest())
            cur = await conn.execute("select g, repeat('x', 200) from generate_series(1, 20000) g")
            rows = await cur.fetchall()
            assert rows == [(g, "x" * 200) for g in range(1, 20001)]
            # A named (server-side) cursor, streamed in batches.
            async with conn.cursor(name="stream") as named:
                named.itersize = 300
                await named.execute("select generate_series(1, 5000)")
                assert [r[0] async for r in named] == list(range(1, 5001))

    run(impl, loop_factory, main)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_psycopg_session_ended_by_server(impl, loop_factory, postgres_server, transport):  # noqa: F811
    dsn = postgres_server.dsn(unix=transport == "unix")

    async def main():
        admin = await asyncpg.connect(postgres_server.dsn())
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            await terminate(admin, [conn.info.backend_pid])
            with pytest.raises(psycopg.OperationalError):
                await conn.execute("select 1")
            assert conn.broken and conn.closed
            # A pool that checks its connections replaces the ones the server ended.
            pool = psycopg_pool.AsyncConnectionPool(
                dsn,
                min_size=2,
                max_size=2,
                open=False,
                check=psycopg_pool.AsyncConnectionPool.check_connection,
            )
            await pool.open(wait=True, timeout=20)
            try:
                barrier = asyncio.Barrier(2)

                async def pid():
                    async with pool.connection() as c:
                        await barrier.wait()
                        return c.info.backend_pid

                old = set(await asyncio.gather(pid(), pid()))
                await terminate(admin, old)
                barrier = asyncio.Barrier(2)
                new = set(await asyncio.gather(pid(), pid()))
                assert len(new) == 2 and not new & old
            finally:
                await pool.close()
        finally:
            await conn.close()
            await admin.close()

    run(impl, loop_factory, main)


def test_psycopg_tls(impl, loop_factory, postgres_server):  # noqa: F811
    blob = pattern(2 << 20)

    async def main():
        dsn = postgres_server.dsn(tls=True)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            assert conn.pgconn.ssl_in_use
            cur = await conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
            assert await cur.fetchone() == (True,)
            cur = await conn.execute("select %b::bytea", (blob,))
            assert await cur.fetchone() == (blob,)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.execute("select pg_sleep(30)"), 0.3)
            cur = await conn.execute("select 'after cancel'")
            assert await cur.fetchone() == ("after cancel",)

    run(impl, loop_factory, main)
