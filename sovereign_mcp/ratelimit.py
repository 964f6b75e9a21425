"""Per-client rate limits (no MCP or HTTP here): which bucket a client is, and whether it may go on.

Counting is done by the `limits <https://limits.readthedocs.io>`_ library with its moving-window
strategy, so a burst at a window edge cannot pass twice the limit. Counters live in the storage named by
``rate_limit.storage_uri``: ``memory://`` keeps them in this process (each ``--workers`` process counts
on its own), ``redis://host:port`` shares them.

Client keys: ``token:<client id>`` for a caller authenticated by bearer token, else ``ip:<address>``
with IPv6 addresses masked to their /64 (RFC 4291 §2.5.4: a /64 is one subnet, usually one subscriber,
and a host can pick any address in it, so per-address keys would be free to rotate).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse
from limits.errors import ConfigurationError
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from sovereign_mcp.config import ConfigError, RateLimitSettings, Settings

log = logging.getLogger(__name__)

Kind = Literal["free", "challenge"]
IPV6_PREFIX = 64


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused request: ``limit`` as text (``"60 per 1 minute"``), ``retry_after`` in whole seconds (>= 1)."""

    kind: Kind
    limit: str
    retry_after: int

    @property
    def message(self) -> str:
        """What the client is told, e.g. ``rate limit exceeded: 60 per 1 minute; retry after 12 s``."""
        what = "" if self.kind == "free" else " for L402 invoices"
        return f"rate limit exceeded{what}: {self.limit}; retry after {self.retry_after} s"


def client_key(ip: str | None, token_id: str | None = None) -> str:
    """The bucket of a client: ``token:<id>`` when authenticated, else ``ip:<address>`` (IPv6 -> its /64).

    An unparseable or missing address (a Unix socket, a test transport) is used as given, or ``ip:unknown``.
    """
    if token_id:
        return f"token:{token_id}"
    if not ip:
        return "ip:unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"ip:{ip}"
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.version == 6:
        return f"ip:{ipaddress.ip_network(f'{address}/{IPV6_PREFIX}', strict=False)}"
    return f"ip:{address}"


class RateLimiter:
    """Moving-window limits per client for free calls and for L402 challenges (``settings.rate_limit``).

    Raises:
        ValueError: a limit string the ``limits`` library cannot parse (``Settings`` validates them first).
        ConfigError: an unknown storage scheme, or one whose client library is not installed.
    """

    def __init__(self, config: RateLimitSettings, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.items: dict[Kind, RateLimitItem] = {"free": parse(config.free_calls),
                                                  "challenge": parse(config.challenges)}
        try:
            self.storage = storage_from_string(config.storage_uri)
        except ConfigurationError as exc:
            raise ConfigError(f"rate_limit.storage_uri = {config.storage_uri!r}: {exc} (memory:// needs "
                              "nothing; redis:// needs 'pip install redis')") from None
        self.strategy = MovingWindowRateLimiter(self.storage)

    @property
    def per_process(self) -> bool:
        """True when counters live in this process only (``memory://``)."""
        return isinstance(self.storage, MemoryStorage)

    def hit(self, kind: Kind, client: str) -> Refusal | None:
        """Count one ``kind`` request of ``client``: ``None`` when allowed, else the :class:`Refusal`.

        A refused request is not counted, so a client that waits ``retry_after`` seconds gets through.
        """
        item = self.items[kind]
        if self.strategy.hit(item, kind, client):
            return None
        reset_at = self.strategy.get_window_stats(item, kind, client).reset_time
        return Refusal(kind, str(item), max(1, math.ceil(reset_at - self.clock())))

    def reset(self) -> None:
        """Forget every counter (tests, or an operator clearing a mistaken ban)."""
        self.storage.reset()


def limiter_for(settings: Settings) -> RateLimiter | None:
    """The limiter of ``settings`` (``None`` when ``rate_limit.enabled`` is off); warns when several worker
    processes would each count separately (``memory://`` with ``server.workers > 1``)."""
    if not settings.rate_limit.enabled:
        return None
    limiter = RateLimiter(settings.rate_limit)
    if limiter.per_process and settings.server.workers > 1:
        log.warning("rate_limit.storage_uri is memory://, so each of the %d worker processes counts on its "
                    "own (a client gets up to %d x %s); set rate_limit.storage_uri = \"redis://host:6379\" to "
                    "share the counters", settings.server.workers, settings.server.workers,
                    settings.rate_limit.free_calls)
    return limiter
