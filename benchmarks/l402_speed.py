"""L402 cost: token verifications per second in-process, and the p50 latency the L402 check adds to a
paid call over HTTP.

* in-process: ``L402Service.verify`` on one paid bundle token, repeated (the macaroon check is
  remembered per credential; the token row is read each time), the same for 500 credentials seen
  once each (parse, macaroon decode, sha256(preimage), SQLite lookup, HMAC chain, caveats), and
  ``spend`` (verify + atomic metering write).
* over HTTP: the real server twice on loopback, payments on and off (named baseline "payments off"),
  the same ``POST /api/validate`` with a short text, sequential requests; the figure is the
  difference of the medians. The token is a bundle large enough for every request.

Targets (issue): >= 20,000 verifications/s; <= 1 ms added p50. Exit 1 when missed.
Usage: ``python benchmarks/l402_speed.py [--n 20000] [--requests 300]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sovereign_mcp.config import Price, load_settings  # noqa: E402
from sovereign_mcp.payments.service import open_payments  # noqa: E402
from tests.helpers import running_server  # noqa: E402

TEXT = {"text": "A short paragraph about SGLang 0.5.2 on the GB10.\n", "kind": "article"}
BUNDLE = 1_000_000


def in_process(n: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, data_dir=Path(tmp))
        settings.payments.prices["validate_quality"] = Price(sats=21, calls=BUNDLE)
        service = open_payments(settings)
        challenge = service.challenge("validate_quality")
        credential = f"L402 {challenge.macaroon}:{service.backend.pay(challenge.bolt11)}"
        service.spend(credential, "validate_quality")
        started = time.perf_counter()
        for _ in range(n):
            service.verify(credential, "validate_quality")
        verify_rate = n / (time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(n // 4):
            service.spend(credential, "validate_quality")
        spend_rate = (n // 4) / (time.perf_counter() - started)
        fresh = []
        for _ in range(500):
            c = service.challenge("validate_quality")
            fresh.append(f"L402 {c.macaroon}:{service.backend.pay(c.bolt11)}")
        started = time.perf_counter()
        for credential in fresh:
            service.verify(credential, "validate_quality")
        cold_rate = len(fresh) / (time.perf_counter() - started)
        return verify_rate, spend_rate, cold_rate


def http_p50(requests: int, corpus: Path) -> tuple[float, float]:
    unlimited = {"SOVEREIGN_MCP_RATE_LIMIT__ENABLED": "false"}  # timing, not the 60/minute free-call limit
    env_bundle = {**unlimited, "SOVEREIGN_MCP_PAYMENTS__PRICES__VALIDATE_QUALITY__SATS": "21",
                  "SOVEREIGN_MCP_PAYMENTS__PRICES__VALIDATE_QUALITY__CALLS": str(BUNDLE)}
    results = {}
    for label, env in (("payments off", {**unlimited, "SOVEREIGN_MCP_PAYMENTS__ENABLED": "false"}),
                       ("L402", env_bundle)):
        with tempfile.TemporaryDirectory() as data, running_server("--corpus", str(corpus), "--data-dir", data,
                                                                   env=env) as url:
            headers = {}
            with httpx.Client(base_url=url, timeout=30) as http:
                if label == "L402":
                    challenge = http.post("/api/validate", json=TEXT).json()["payment_required"]
                    preimage = subprocess.run(
                        [sys.executable, "-m", "sovereign_mcp", "l402", "pay", challenge["invoice"],
                         "--data-dir", data],
                        capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout.strip()
                    headers = {"Authorization": f"L402 {challenge['macaroon']}:{preimage}"}
                for _ in range(20):  # warm-up
                    assert http.post("/api/validate", json=TEXT, headers=headers).status_code == 200
                times = []
                for _ in range(requests):
                    started = time.perf_counter()
                    response = http.post("/api/validate", json=TEXT, headers=headers)
                    times.append((time.perf_counter() - started) * 1000)
                    assert response.status_code == 200, response.text
            results[label] = statistics.median(times)
    return results["payments off"], results["L402"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="in-process verifications")
    parser.add_argument("--requests", type=int, default=300, help="HTTP requests per server")
    args = parser.parse_args(argv)

    verify_rate, spend_rate, cold_rate = in_process(args.n)
    print(f"in-process verify, repeated credential: {verify_rate:,.0f}/s ({1e6 / verify_rate:.1f} us each); "
          f"first sight of a credential (full macaroon check): {cold_rate:,.0f}/s; "
          f"spend (verify + metering write): {spend_rate:,.0f}/s")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp)
        (corpus / "a.md").write_text("---\ntitle: A\ndate: 2026-01-01\n---\n\nText.\n")
        off, on = http_p50(args.requests, corpus)
    print(f"POST /api/validate p50: payments off (baseline) {off:.2f} ms, with L402 {on:.2f} ms, "
          f"added {on - off:+.2f} ms")
    ok_rate, ok_latency = verify_rate >= 20_000, on - off <= 1.0
    print(f"target >= 20,000 verifications/s: {'PASS' if ok_rate else 'FAIL'}")
    print(f"target <= 1 ms added p50 over HTTP: {'PASS' if ok_latency else 'FAIL'}")
    return 0 if ok_rate and ok_latency else 1


if __name__ == "__main__":
    sys.exit(main())
