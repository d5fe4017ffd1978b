"""An aiohttp application served by `web.run_app` (tests/integration/test_aiohttp.py).

    python [-m rose] aiohttp_app.py PORT FILE
    python aiohttp_app.py PORT FILE --loop=rose|asyncio    (run_app's loop= argument)

Routes: /loop (the running loop's class), /hello, /slow (a short sleep), /stream (a 10 MB
streamed body), /file (FILE as a FileResponse, sent with loop.sendfile), /ws (an echo
websocket). On shutdown the app prints what its on_shutdown and cleanup_ctx hooks did.
"""

import asyncio
import sys

from aiohttp import WSMsgType, web
from appcommon import running_loop_name, stream_chunk

STREAM_CHUNKS = 160  # 160 x 64 KiB = 10 MiB


async def loop_name(request):
    return web.Response(text=running_loop_name())


async def hello(request):
    return web.Response(text="hello, " + request.query.get("name", "world"))


async def slow(request):
    await asyncio.sleep(0.05)
    return web.json_response({"n": int(request.query["n"])})


async def stream(request):
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    await resp.prepare(request)
    for i in range(STREAM_CHUNKS):
        await resp.write(stream_chunk(i))
    await resp.write_eof()
    return resp


async def file(request):
    return web.FileResponse(request.app["file"])


async def ws(request):
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for msg in sock:
        if msg.type == WSMsgType.TEXT:
            if msg.data == "close":
                await sock.close(code=4001, message=b"asked to")
            else:
                await sock.send_str("echo: " + msg.data)
        elif msg.type == WSMsgType.BINARY:
            await sock.send_bytes(msg.data[::-1])
    return sock


async def on_shutdown(app):
    print("on_shutdown ran", flush=True)


async def resources(app):
    print("cleanup_ctx started", flush=True)
    yield
    print("cleanup_ctx cleaned up", flush=True)


def make_app(path):
    app = web.Application()
    app["file"] = path
    app.router.add_get("/loop", loop_name)
    app.router.add_get("/hello", hello)
    app.router.add_get("/slow", slow)
    app.router.add_get("/stream", stream)
    app.router.add_get("/file", file)
    app.router.add_get("/ws", ws)
    app.on_shutdown.append(on_shutdown)
    app.cleanup_ctx.append(resources)
    return app


if __name__ == "__main__":
    port, path = int(sys.argv[1]), sys.argv[2]
    kwargs = {}
    if sys.argv[3:] == ["--loop=rose"]:
        import rose

        kwargs["loop"] = rose.new_event_loop()
    elif sys.argv[3:] == ["--loop=asyncio"]:
        kwargs["loop"] = asyncio.new_event_loop()
    web.run_app(make_app(path), host="127.0.0.1", port=port, backlog=1024, print=None, **kwargs)
    print("run_app returned", flush=True)
