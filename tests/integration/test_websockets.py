"""websockets (its asyncio implementation): server and client both on the loop under test."""

from __future__ import annotations

import asyncio

import pytest
from frameworks import assert_impl_loop, run
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK


async def echo(ws):
    async for message in ws:
        if message == "close please":
            await ws.close(1000, "as asked")
            return
        if message == "app close":
            await ws.close(4003, "app code")
            return
        if message == "violate":
            await ws.close(1008, "policy")
            return
        await ws.send(message)  # str comes back as text, bytes as binary


@pytest.fixture
def serve_and_connect(loop_factory):
    """Run ``body(uri, server)`` with an echo server on 127.0.0.1, all on one loop."""

    def go(body, handler=echo):
        async def main():
            async with serve(handler, "127.0.0.1", 0) as server:
                port = server.sockets[0].getsockname()[1]
                return await body(f"ws://127.0.0.1:{port}", server)

        return run(loop_factory, main())

    return go


def test_text_and_binary_echo(impl, serve_and_connect):
    async def body(uri, server):
        assert_impl_loop(impl, asyncio.get_running_loop())
        async with connect(uri) as ws:
            await ws.send("héllo")
            text = await ws.recv()
            big = bytes(range(256)) * 4096  # 1 MiB: split in frames, reassembled
            await ws.send(big)
            binary = await ws.recv()
            fragments = ["a", "b", "c"]
            await ws.send(fragments)  # one fragmented text message
            joined = await ws.recv()
            pong_waiter = await ws.ping(b"p")
            latency = await asyncio.wait_for(pong_waiter, 5)
        assert ws.close_code == 1000
        return text, binary == big, type(binary), joined, latency >= 0

    assert serve_and_connect(body) == ("héllo", True, bytes, "abc", True)


def test_many_clients(impl, serve_and_connect):
    async def body(uri, server):
        assert_impl_loop(impl, asyncio.get_running_loop())

        async def client(i):
            async with connect(uri) as ws:
                for j in range(10):
                    await ws.send(f"{i}:{j}")
                    assert await ws.recv() == f"{i}:{j}"
            return i

        return await asyncio.gather(*(client(i) for i in range(50)))

    assert serve_and_connect(body) == list(range(50))


def test_close_codes(impl, serve_and_connect):
    async def body(uri, server):
        assert_impl_loop(impl, asyncio.get_running_loop())
        codes = []
        # a normal closure by the server is a clean close for the client; an application code
        # (4003) or a policy violation (1008) is an error close (websockets' rule: only 1000
        # and 1001 are OK)
        for message, expected in [
            ("close please", ConnectionClosedOK),
            ("app close", ConnectionClosedError),
            ("violate", ConnectionClosedError),
        ]:
            async with connect(uri) as ws:
                await ws.send(message)
                with pytest.raises(expected) as exc:
                    await ws.recv()
            codes.append((exc.value.rcvd.code, exc.value.rcvd.reason))
        # the client closes with its own code: the server's handler sees it
        seen = asyncio.get_running_loop().create_future()

        async def recorder(ws):
            try:
                await ws.recv()
            except ConnectionClosed as e:
                seen.set_result((e.rcvd.code, e.rcvd.reason))

        async with serve(recorder, "127.0.0.1", 0) as other:
            port = other.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}") as ws:
                await ws.close(4100, "client done")
            codes.append(await asyncio.wait_for(seen, 5))
        return codes

    assert serve_and_connect(body) == [
        (1000, "as asked"),
        (4003, "app code"),
        (1008, "policy"),
        (4100, "client done"),
    ]
