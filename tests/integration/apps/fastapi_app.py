"""A FastAPI application for uvicorn and gunicorn (test_uvicorn.py, test_gunicorn.py).

Routes: /loop (the running loop's class and the worker's pid), /items/{id} (JSON, with a
query parameter and validation), /ws (an echo websocket). Its lifespan prints on startup and
shutdown.
"""

import contextlib
import os

from appcommon import running_loop_name
from fastapi import FastAPI, WebSocket, WebSocketDisconnect


@contextlib.asynccontextmanager
async def lifespan(app):
    print(f"lifespan startup {os.getpid()}", flush=True)
    yield
    print(f"lifespan shutdown {os.getpid()}", flush=True)


app = FastAPI(lifespan=lifespan)


@app.get("/loop")
async def loop():
    return {"loop": running_loop_name(), "pid": os.getpid()}


@app.get("/items/{item_id}")
async def item(item_id: int, q: str = ""):
    return {"id": item_id, "q": q, "double": item_id * 2}


@app.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                return
            if msg.get("text") == "close":
                await websocket.close(code=4002, reason="done")
                return
            if msg.get("text") is not None:
                await websocket.send_text("echo: " + msg["text"])
            else:
                await websocket.send_bytes(msg["bytes"][::-1])
    except WebSocketDisconnect:
        pass
