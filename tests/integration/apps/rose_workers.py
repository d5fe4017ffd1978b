"""gunicorn worker classes that run their app on rose (test_gunicorn.py; the README shows
them). Neither stock worker takes a loop factory:

- aiohttp's GunicornWebWorker makes its loop with asyncio.new_event_loop() in init_process
  (GunicornUVLoopWebWorker imports uvloop and installs uvloop's policy: uvloop only);
- uvicorn's UvicornWorker (package uvicorn-worker) reads uvicorn's options from its class
  attribute CONFIG_KWARGS, whose "loop" is "auto" (uvloop, else asyncio's selector loop).
"""

import asyncio

import rose
from aiohttp.worker import GunicornWebWorker
from gunicorn.workers.base import Worker
from uvicorn_worker import UvicornWorker


class RoseWebWorker(GunicornWebWorker):
    """aiohttp's gunicorn worker on a rose loop."""

    def init_process(self):
        # GunicornWebWorker.init_process makes an asyncio loop, then calls Worker's (which
        # runs the worker and never returns): make a rose loop instead, then call Worker's.
        self.loop = rose.new_event_loop()
        asyncio.set_event_loop(self.loop)
        Worker.init_process(self)


class RoseUvicornWorker(UvicornWorker):
    """uvicorn's gunicorn worker on rose: uvicorn's `--loop rose:new_event_loop`."""

    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "loop": "rose:new_event_loop"}
