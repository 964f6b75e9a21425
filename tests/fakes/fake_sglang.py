"""A loopback stand-in for a running SGLang server (``python -m sglang.launch_server``).

Speaks the endpoint shapes the live probe reads (SGLang ``python/sglang/srt/entrypoints/http_server.py``):
``GET /health`` (200 when
ready, 503 while warming up), ``GET /server_info`` (server args as JSON), ``GET /model_info``,
``GET /metrics`` (Prometheus text with ``--enable-metrics``). ``deprecated=True`` makes it behave like
an older server: 404 on ``/server_info`` and ``/model_info`` but answers ``/get_server_info`` and
``/get_model_info``. Paths in ``hang`` block (longer than any probe timeout) before answering.

Runs ``http.server.ThreadingHTTPServer`` in a daemon thread on 127.0.0.1 only::

    with fake_sglang(health_status=503) as fake:
        probe_sglang(fake.url)
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVER_ARGS: dict[str, Any] = {
    "model_path": "/models/Mistral-Small-4-119B-2603",
    "tokenizer_path": "/models/Mistral-Small-4-119B-2603",
    "host": "0.0.0.0",
    "port": 30000,
    "attention_backend": "flashinfer",
    "mem_fraction_static": 0.9,
    "cuda_graph_max_bs": 64,
    "max_running_requests": 16,
    "tp_size": 1,
    "disable_cuda_graph": False,
    "speculative_algorithm": None,
    "enable_metrics": True,
    "version": "0.5.9",
}

MODEL_INFO: dict[str, Any] = {
    "model_path": "/models/Mistral-Small-4-119B-2603",
    "tokenizer_path": "/models/Mistral-Small-4-119B-2603",
    "is_generation": True,
    "preferred_sampling_params": None,
}

# Shaped like SGLang's exposition (prometheus_client): HELP/TYPE lines, a model_name label, gauges,
# a counter and a histogram the probe must skip.
METRICS = """\
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="m"} 3.0
# HELP sglang:num_used_tokens The number of used tokens.
# TYPE sglang:num_used_tokens gauge
sglang:num_used_tokens{model_name="m"} 381521.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{model_name="m"} 0.93
# HELP sglang:gen_throughput The generation throughput (token/s).
# TYPE sglang:gen_throughput gauge
sglang:gen_throughput{model_name="m"} 38.5
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{model_name="m"} 2.0
# HELP sglang:prompt_tokens_total Number of prefill tokens processed.
# TYPE sglang:prompt_tokens_total counter
sglang:prompt_tokens_total{model_name="m"} 1.2e+06
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{le="0.1",model_name="m"} 12.0
sglang:time_to_first_token_seconds_bucket{le="1.0",model_name="m"} 40.0
sglang:time_to_first_token_seconds_bucket{le="+Inf",model_name="m"} 41.0
sglang:time_to_first_token_seconds_count{model_name="m"} 41.0
sglang:time_to_first_token_seconds_sum{model_name="m"} 9.7
"""


@dataclass
class FakeSGLang:
    """Behaviour switches (mutable while running) and what was requested."""

    health_status: int = 200
    deprecated: bool = False
    server_args: dict[str, Any] = field(default_factory=lambda: dict(SERVER_ARGS))
    model_info: dict[str, Any] = field(default_factory=lambda: dict(MODEL_INFO))
    metrics: str | None = METRICS  # None: 404 like a server started without --enable-metrics
    hang: set[str] = field(default_factory=set)
    hang_seconds: float = 5.0
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def routes(self) -> dict[str, tuple[int, str, bytes]]:
        info = ("/get_server_info", "/get_model_info") if self.deprecated else ("/server_info", "/model_info")
        out = {
            "/health": (self.health_status, "text/plain", b"" if self.health_status == 200 else b"warming up"),
            info[0]: (200, "application/json", json.dumps(self.server_args).encode()),
            info[1]: (200, "application/json", json.dumps(self.model_info).encode()),
            "/v1/models": (200, "application/json", b'{"object": "list", "data": [{"id": "m"}]}'),
        }
        if self.metrics is not None:
            out["/metrics"] = (200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.encode())
        return out


def _handler(fake: FakeSGLang) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            path = self.path.split("?", 1)[0]
            fake.requests.append((self.command, path))
            if path in fake.hang:
                fake.released.wait(fake.hang_seconds)
            if self.command != "GET":
                status, ctype, body = 405, "application/json", b'{"detail": "Method Not Allowed"}'
            else:
                status, ctype, body = fake.routes().get(path, (404, "application/json", b'{"detail": "Not Found"}'))
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timeout test)
                pass

        do_GET = _answer
        do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@contextlib.contextmanager
def fake_sglang(**options: Any) -> Iterator[FakeSGLang]:
    """Run a :class:`FakeSGLang` on a free 127.0.0.1 port; yields it with ``url`` set."""
    fake = FakeSGLang(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    server.block_on_close = False
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
