"""Small pieces the benchmark scripts share (imported as ``_common``: scripts run with benchmarks/ on sys.path)."""

from __future__ import annotations

import socket
import statistics


def pct(values: list[float], q: int) -> float:
    """The ``q``-th percentile (1..99, inclusive linear interpolation); NaN for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
