"""Every connection ``serve`` accepts has Nagle off (TCP_NODELAY), for one worker and for ``--workers N``.

With Nagle on, a response body written after its headers waits for the client's delayed ACK (~40 ms on Linux).
These tests run real uvicorn on the listener ``serve`` binds (``bind_listener``), with an HTTP protocol class
that reads the accepted socket's TCP_NODELAY when the connection is made; the ``--workers`` case first sends
the listener through multiprocessing's socket pickling, as uvicorn's ``Multiprocess`` does for its children.
"""

from __future__ import annotations

import asyncio
import io
import pickle
import socket
import threading
from multiprocessing.reduction import ForkingPickler

import httpx
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sovereign_mcp.server.instance import bind_listener


async def _hello(scope, receive, send) -> None:  # a minimal ASGI app
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _serve_and_read_nodelay(listener: socket.socket, requests: int = 3) -> list[int]:
    """TCP_NODELAY of each connection real uvicorn accepts on ``listener`` (one per request, no keep-alive)."""
    seen: list[int] = []

    class Recording(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            sock = transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            super().connection_made(transport)

    server = uvicorn.Server(uvicorn.Config(_hello, http=Recording, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        port = listener.getsockname()[1]
        for _ in range(requests):
            with httpx.Client() as client:
                assert client.get(f"http://127.0.0.1:{port}/").text == "ok"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return seen


def test_listener_is_a_tcp_socket():
    with bind_listener("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP


def test_accepted_connections_have_nagle_off():
    seen = _serve_and_read_nodelay(bind_listener("127.0.0.1", 0))
    assert len(seen) == 3
    assert all(seen), f"TCP_NODELAY off on an accepted connection: {seen}"


def test_worker_processes_inherit_a_listener_whose_connections_have_nagle_off():
    listener = bind_listener("127.0.0.1", 0)
    buf = io.BytesIO()
    ForkingPickler(buf).dump(listener)  # what multiprocessing does with Process(kwargs={"sockets": [...]})
    rebuilt = pickle.loads(buf.getvalue())
    listener.close()
    assert rebuilt.proto == socket.IPPROTO_TCP
    seen = _serve_and_read_nodelay(rebuilt)
    assert seen and all(seen), f"TCP_NODELAY off in a worker: {seen}"


def test_the_check_fails_for_a_listener_made_without_ipproto_tcp():
    """The bug this file guards against: a listener made with proto 0 gives connections with Nagle on."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    seen = _serve_and_read_nodelay(listener, requests=1)
    assert seen == [0]
