"""An aiohttp application that serves its event loop's metrics on /metrics, in the Prometheus
text format, and reports slow callbacks through the `asyncio` logger.

    python -m rose examples/metrics_aiohttp.py [PORT]    # then: curl localhost:8080/metrics
"""

import asyncio
import logging
import sys
import time

from aiohttp import web

import rose


async def hello(request):
    return web.Response(text="hello\n")


async def slow(request):
    time.sleep(0.2)  # blocks the loop: reported as a slow callback
    return web.Response(text="slow\n")


async def metrics(request):
    text = rose.metrics_text(labels={"app": "example"})
    return web.Response(text=text, content_type="text/plain", charset="utf-8",
                        headers={"X-Loop": type(asyncio.get_running_loop()).__name__})  # fmt: skip


def main():
    logging.basicConfig(level=logging.WARNING)
    rose.set_slow_callback_threshold(0.1)  # log callbacks that block the loop for 100 ms or more
    app = web.Application()
    app.add_routes([web.get("/", hello), web.get("/slow", slow), web.get("/metrics", metrics)])
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    web.run_app(app, host="127.0.0.1", port=port, loop=rose.new_event_loop())


if __name__ == "__main__":
    main()
