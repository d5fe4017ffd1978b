"""glibc's heap thresholds after a loop's first read (README, "Differences from asyncio").

asyncio's first `recv` frees a 256 KiB block, which raises glibc's mmap threshold to about
that; rose's first read on a thread frees a 4 MiB block instead (src/transport.rs,
`raise_heap_thresholds`), so blocks under 4 MiB then come from the heap. Seen from a child
process (the thresholds are process-wide, and each probe's free moves them too) through
`mallinfo2().hblks`, the count of mmapped blocks.
"""

from __future__ import annotations

import ctypes
import json

import pytest

from conftest import run_child

pytestmark = pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc's mallinfo2 (glibc 2.33+)"
)

BODY = """
import ctypes, json, socket

libc = ctypes.CDLL(None)

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def mmapped(size):
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    assert block
    after = libc.mallinfo2().hblks
    libc.free(block)
    return after > before

async def read_once():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    got = loop.create_future()

    class Reader(asyncio.Protocol):
        def data_received(self, data):
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.connect_accepted_socket(Reader, a)
    b.send(b"x")
    assert await got == b"x"
    transport.close()
    b.close()

# No probe before the read: freeing an mmapped block is what moves the thresholds.
run(read_once())
print(json.dumps({"1MiB": mmapped(1 << 20), "16MiB": mmapped(16 << 20)}))
"""


def test_heap_thresholds_after_the_first_read(impl):
    result = run_child(impl, BODY)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    # Past every threshold either loop sets: always an mmapped block.
    assert seen["16MiB"] is True
    # rose's 4 MiB block brought a 1 MiB one under the threshold; asyncio's 256 KiB did not.
    assert seen["1MiB"] is (impl != "rose")
