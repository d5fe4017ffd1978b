"""An aiohttp app for gunicorn's aiohttp worker (test_gunicorn.py): `gunicorn_aiohttp:app`."""

import os

from aiohttp import web
from appcommon import running_loop_name


async def loop_name(request):
    return web.json_response({"loop": running_loop_name(), "pid": os.getpid()})


async def on_shutdown(app):
    print(f"on_shutdown ran {os.getpid()}", flush=True)


async def on_cleanup(app):
    print(f"on_cleanup ran {os.getpid()}", flush=True)


app = web.Application()
app.router.add_get("/loop", loop_name)
app.on_shutdown.append(on_shutdown)
app.on_cleanup.append(on_cleanup)
