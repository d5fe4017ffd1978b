"""Twisted's asyncio reactor on a given loop (test_twisted.py): a TCP echo, a timer and a
thread, then a JSON line with what happened.

    python twisted_app.py asyncio|rose
"""

import asyncio
import json
import sys
import threading

IMPL = sys.argv[1]
if IMPL == "rose":
    import rose

    LOOP = rose.new_event_loop()
else:
    LOOP = asyncio.new_event_loop()

from twisted.internet import asyncioreactor  # noqa: E402

asyncioreactor.install(eventloop=LOOP)

from twisted.internet import defer, protocol, reactor, task, threads  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol  # noqa: E402


class Echo(protocol.Protocol):
    def dataReceived(self, data):
        self.transport.write(data)


class Collect(protocol.Protocol):
    def __init__(self, expected):
        self.expected = expected
        self.received = b""
        self.done = defer.Deferred()

    def dataReceived(self, data):
        self.received += data
        if len(self.received) >= self.expected:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        self.done.callback(self.received)


@defer.inlineCallbacks
def main():
    result = {"loop": f"{type(LOOP).__module__}.{type(LOOP).__qualname__}",
              "reactor_loop_is_ours": reactor._asyncioEventloop is LOOP}
    factory = protocol.Factory.forProtocol(Echo)
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    payload = bytes(range(256)) * 4000  # ~1 MB
    client = Collect(len(payload))
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
    yield connectProtocol(endpoint, client)
    client.transport.write(payload)
    received = yield client.done
    result["echo_ok"] = received == payload
    yield port.stopListening()

    start = reactor.seconds()
    fired = yield task.deferLater(reactor, 0.05, lambda: reactor.seconds() - start)
    result["timer_delay_ok"] = 0.05 <= fired < 2
    order = []
    reactor.callLater(0.02, order.append, "second")
    reactor.callLater(0.01, order.append, "first")
    cancelled = reactor.callLater(0.015, order.append, "cancelled")
    cancelled.cancel()
    yield task.deferLater(reactor, 0.05, lambda: None)
    result["timer_order"] = order

    main_thread = threading.get_ident()
    ident = yield threads.deferToThread(threading.get_ident)
    result["thread_ok"] = ident != main_thread
    result["thread_value"] = yield threads.deferToThread(sum, range(100))
    # the reactor runs on the loop: an asyncio future awaited through a Deferred
    fut = LOOP.create_future()
    LOOP.call_later(0.01, fut.set_result, "from asyncio")
    result["from_future"] = yield defer.Deferred.fromFuture(fut)
    print(json.dumps(result), flush=True)


def run():
    d = main()
    d.addErrback(lambda f: (print(f.getTraceback(), flush=True), None)[1])
    d.addBoth(lambda _: reactor.stop())
    reactor.run()
    print("reactor stopped", flush=True)


run()
