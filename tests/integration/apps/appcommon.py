"""What the apps and the tests both need (importable without pytest)."""

import asyncio
import hashlib

STREAM_CHUNK = 65536


def stream_chunk(i, size=STREAM_CHUNK):
    """Chunk ``i`` of a streamed body: deterministic, different for each chunk."""
    seed = hashlib.sha256(i.to_bytes(4, "big")).digest()
    return (seed * (size // len(seed) + 1))[:size]


def stream_digest(nchunks, size=STREAM_CHUNK):
    h = hashlib.sha256()
    for i in range(nchunks):
        h.update(stream_chunk(i, size))
    return h.hexdigest()


def running_loop_name():
    """The running loop's class, as module.qualname."""
    cls = type(asyncio.get_running_loop())
    return f"{cls.__module__}.{cls.__qualname__}"
