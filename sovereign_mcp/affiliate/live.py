"""The optional live pass: each program link fetched over HTTP to see where it really goes.

Per link (each distinct URL once): ``HEAD`` (``GET`` when the server refuses ``HEAD`` with 405 or 501),
redirects followed by hand up to ``max_hops`` so every hop is seen; then one ``GET`` of the final page, read
up to ``SOFT_404_BYTES``, for "page not found" text served with status 200. Requests to one host are spaced by
``per_host_rate`` (the limits library's moving window) and the whole pass stops at ``budget_seconds``.

Rules (rule id, severity): ``affiliate-dead-link`` (medium: 4xx/5xx, DNS, TLS or connection failure),
``affiliate-id-stripped`` (high: the chain ends on a program host without the operator's id, or with
another one), ``affiliate-soft-404`` (medium), ``affiliate-redirect-chain`` (low: 4 hops or more),
``affiliate-live-skipped`` (low, once: links the budget left unchecked).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from sovereign_mcp.affiliate.checker import AffiliateChecker, ProgramLink
from sovereign_mcp.affiliate.config import AffiliateSettings
from sovereign_mcp.gate.document import Document
from sovereign_mcp.gate.report import Finding, finding
from sovereign_mcp.kb.entry_types import Severity

SOFT_404_BYTES = 65_536
SOFT_404 = ("page not found", "page you requested could not be found", "no longer available",
            "we couldn't find that page", "we could not find that page", "this page does not exist",
            "looking for something?")
"""Text of a "not found" page served with HTTP 200 (lower case)."""
LONG_CHAIN = 4


@dataclass
class Trace:
    """Where one URL led: every URL visited in order, the last status (``None``: no answer), the failure."""

    hops: list[str] = field(default_factory=list)
    status: int | None = None
    error: str | None = None
    body: str = ""

    @property
    def final(self) -> str:
        return self.hops[-1]


class HostPacer:
    """Waits until ``host`` may be asked again under ``rate`` (``"1/second"``)."""

    def __init__(self, rate: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self.item = parse(rate)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.sleep = sleep

    def wait(self, host: str, deadline: float) -> bool:
        """Block until a request to ``host`` is allowed; ``False`` when that would pass ``deadline``
        (monotonic s)."""
        while not self.limiter.hit(self.item, host):
            reset = self.limiter.get_window_stats(self.item, host).reset_time
            pause = max(0.01, reset - time.time())
            if time.monotonic() + pause > deadline:
                return False
            self.sleep(pause)
        return True


def trace(client: httpx.Client, url: str, max_hops: int, pacer: HostPacer, deadline: float) -> Trace:
    """Follow ``url`` hop by hop (see the module doc). Raises nothing: failures land in ``Trace.error``."""
    t = Trace(hops=[url])
    method = "HEAD"
    while True:
        host = urlsplit(t.final).hostname or ""
        if not pacer.wait(host, deadline):
            t.error = "time budget spent"
            return t
        try:
            response = client.request(method, t.final)
        except httpx.HTTPError as exc:
            t.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return t
        if method == "HEAD" and response.status_code in (405, 501):
            method = "GET"
            continue
        t.status = response.status_code
        location = response.headers.get("location")
        if response.is_redirect and location:
            if len(t.hops) > max_hops:
                t.error = f"more than {max_hops} redirects"
                return t
            t.hops.append(urljoin(t.final, location))
            method = "HEAD"
            continue
        if response.status_code == 200:
            t.body = (_page_start(client, t.final, pacer, deadline) if method == "HEAD"
                      else response.text[:SOFT_404_BYTES])
        return t


def _page_start(client: httpx.Client, url: str, pacer: HostPacer, deadline: float) -> str:
    if not pacer.wait(urlsplit(url).hostname or "", deadline):
        return ""
    try:
        with client.stream("GET", url) as response:
            data = b""
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= SOFT_404_BYTES:
                    break
            return data[:SOFT_404_BYTES].decode(response.encoding or "utf-8", errors="replace")
    except httpx.HTTPError:
        return ""


def live_findings(doc: Document, links: list[ProgramLink], checker: AffiliateChecker, settings: AffiliateSettings,
                  transport: httpx.BaseTransport | None = None) -> list[Finding]:
    """The live pass over ``links`` of ``doc``. Raises nothing (each failure is a finding)."""
    deadline = time.monotonic() + settings.budget_seconds
    pacer = HostPacer(settings.per_host_rate)
    out: list[Finding] = []
    seen: dict[str, Trace] = {}
    skipped = 0
    headers = {"User-Agent": "sovereign-mcp affiliate check"}
    with httpx.Client(timeout=settings.timeout_seconds, follow_redirects=False, trust_env=False,
                      transport=transport, headers=headers) as client:
        for pl in links:
            link = pl.link
            if time.monotonic() >= deadline:
                skipped += 1
                continue
            t = seen.get(link.url) or trace(client, link.url, settings.max_hops, pacer, deadline)
            seen[link.url] = t
            if t.error == "time budget spent":
                skipped += 1
                continue
            for rule, severity, message, suggestion in _problems(t, pl, checker):
                out.append(finding(doc, rule, severity, link.start, link.end, message, suggestion))
    if skipped:
        first = links[-skipped]
        out.append(finding(doc, "affiliate-live-skipped", "low", first.link.start, first.link.end,
                           f"{skipped} link(s) not checked live: the {settings.budget_seconds:g} s budget ran out",
                           "raise [affiliate] budget_seconds or check fewer files at once"))
    return out


def _problems(t: Trace, pl: ProgramLink, checker: AffiliateChecker) -> list[tuple[str, Severity, str, str]]:
    """``(rule id, severity, message, suggestion)`` for one traced link."""
    if t.error is not None or (t.status is not None and t.status >= 400):
        return [("affiliate-dead-link", "medium", f"dead link: {t.error or f'HTTP {t.status}'} at {t.final}",
                 "replace or remove the link")]
    out: list[tuple[str, Severity, str, str]] = []
    if len(t.hops) - 1 >= LONG_CHAIN:
        out.append(("affiliate-redirect-chain", "low", f"{len(t.hops) - 1} redirects before {t.final}",
                    "link the final URL directly"))
    stripped = _id_problem(t, pl, checker)
    if stripped:
        out.append(("affiliate-id-stripped", "high", stripped, "link a URL that keeps your id to the end"))
    body = t.body.lower()
    soft = next((phrase for phrase in SOFT_404 if phrase in body), None)
    if soft:
        out.append(("affiliate-soft-404", "medium", f"the page answers 200 but says '{soft}': {t.final}",
                    "the product is gone: replace the link"))
    return out


def _id_problem(t: Trace, pl: ProgramLink, checker: AffiliateChecker) -> str | None:
    """Why the chain's last program URL lacks the operator's id, or ``None``."""
    program = pl.program
    landing = next((url for url in reversed(t.hops) if (d := program.owns(urlsplit(url).hostname or ""))
                    and not program.is_short(d)), None)
    if landing is None:
        return None
    domain = program.owns(urlsplit(landing).hostname or "") or pl.domain
    query = parse_qs(urlsplit(landing).query)
    values = [v for p in program.id_params for v in query.get(p, [])]
    expected = checker.ids.get(program.id_key(domain), checker.ids.get(program.program))
    if not values:
        return f"the {program.program} id is gone by {landing} ({len(t.hops) - 1} redirect(s))"
    if expected is not None and expected not in values:
        return f"the link lands on {landing} with {program.id_params[0]}={values[0]}, not your id {expected}"
    return None
