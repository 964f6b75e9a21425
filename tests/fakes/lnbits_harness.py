"""A real LNbits (FakeWallet funding source) on loopback, for end-to-end L402 tests.

LNbits pins pydantic 1 and lnurl 0.10, which clash with this project, so it lives in its own venv,
created once and reused (``$SOVEREIGN_MCP_LNBITS_VENV``, else ``$XDG_CACHE_HOME/sovereign-mcp/lnbits-venv``,
else ``/tmp/sovereign-mcp-lnbits-venv``). A fresh install takes about 1-2 minutes; it is time-boxed.

With FakeWallet every wallet of one LNbits is on the same fake node, so a payment from the payer wallet
to an invoice of the merchant wallet is settled internally and LNbits releases the preimage it stored
when it created the invoice (``sha256(preimage) == payment_hash``).

Pre-create the venv (idempotent; what ``.ci/run`` may call)::

    python -m tests.fakes.lnbits_harness install
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import free_port

LNBITS_VERSION = "1.6.2"
# bolt11 (an LNbits dependency) breaks on bitstring 5: "cannot import name 'ConstBitStream'".
REQUIREMENTS = (f"lnbits=={LNBITS_VERSION}", "bitstring<5")
INSTALL_TIMEOUT = 15 * 60.0
START_TIMEOUT = 120.0
SUPPORTED_PYTHONS = ((3, 10), (3, 11), (3, 12))  # lnbits 1.6.2: Requires-Python >=3.10,<3.13
READY_MARK = ".sovereign-mcp-lnbits-ready"
_failed: dict[Path, LNbitsUnavailable] = {}  # one failed install per session is enough


class LNbitsUnavailable(RuntimeError):
    """LNbits could not be installed here; ``output`` holds the tail of the installer's output."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message + (f"\n--- output (tail) ---\n{output}" if output else ""))
        self.output = output


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def venv_path() -> Path:
    """Where the LNbits venv lives (see the module docstring)."""
    if os.environ.get("SOVEREIGN_MCP_LNBITS_VENV"):
        return Path(os.environ["SOVEREIGN_MCP_LNBITS_VENV"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "sovereign-mcp" / "lnbits-venv"
    return Path(tempfile.gettempdir()) / "sovereign-mcp-lnbits-venv"


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def _base_python() -> str:
    """An interpreter LNbits supports: this one if it fits, else python3.12/3.11/3.10 from PATH."""
    if sys.version_info[:2] in SUPPORTED_PYTHONS:
        return sys.executable
    for major, minor in reversed(SUPPORTED_PYTHONS):
        found = shutil.which(f"python{major}.{minor}")
        if found:
            return found
    raise LNbitsUnavailable(f"LNbits {LNBITS_VERSION} needs Python 3.10-3.12; this is "
                            f"{sys.version.split()[0]} and no python3.10-3.12 is on PATH")


def _tail(text: str, lines: int = 40) -> str:
    # pip here warns about every missing local index dir; keep the lines that matter
    kept = [line for line in text.splitlines() if not line.startswith("WARNING: Location 'file://")]
    return "\n".join(kept[-lines:])


def _discard(venv: Path) -> None:
    """Remove a stale or half-built venv, but never a directory that is not a venv of ours."""
    if not venv.exists():
        return
    if venv.is_dir() and ((venv / "pyvenv.cfg").is_file() or not any(venv.iterdir())):
        shutil.rmtree(venv, ignore_errors=True)
        return
    raise LNbitsUnavailable(f"{venv} exists and is not a venv; set SOVEREIGN_MCP_LNBITS_VENV elsewhere")


def ensure_venv(timeout: float = INSTALL_TIMEOUT) -> Path:
    """Create (or reuse) the LNbits venv and return its path.

    Reused when its ready mark names the same requirements; otherwise rebuilt from scratch. A file lock
    keeps two sessions from installing at once.

    Raises:
        LNbitsUnavailable: no suitable Python, or venv/pip failed or ran out of time.
    """
    venv = venv_path()
    if venv in _failed:
        raise _failed[venv]
    try:
        return _ensure_venv(venv, timeout)
    except LNbitsUnavailable as exc:
        _failed[venv] = exc
        raise


def _ensure_venv(venv: Path, timeout: float) -> Path:
    mark = venv / READY_MARK
    wanted = " ".join(REQUIREMENTS)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if mark.is_file() and mark.read_text().strip() == wanted and _bin(venv, "lnbits").exists():
            return venv
        _discard(venv)
        deadline = time.monotonic() + timeout
        steps = [
            [_base_python(), "-m", "venv", str(venv)],
            [str(_bin(venv, "python")), "-m", "pip", "install", "--disable-pip-version-check",
             "--no-input", "--progress-bar", "off", *REQUIREMENTS],
        ]
        for cmd in steps:
            try:
                done = subprocess.run(cmd, capture_output=True, text=True,
                                      timeout=max(1.0, deadline - time.monotonic()),
                                      env={**os.environ, "PIP_NO_INPUT": "1"})
            except subprocess.TimeoutExpired as exc:
                _discard(venv)
                output = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part or ""
                                 for part in (exc.stdout, exc.stderr))
                raise LNbitsUnavailable(f"installing LNbits took longer than {timeout:.0f} s: {' '.join(cmd)}",
                                        _tail(output)) from None
            except OSError as exc:
                _discard(venv)
                raise LNbitsUnavailable(f"cannot run {cmd[0]}: {exc}") from None
            if done.returncode != 0:
                _discard(venv)
                raise LNbitsUnavailable(f"{' '.join(cmd[:4])} ... failed with exit code {done.returncode}",
                                        _tail(done.stdout + done.stderr))
        mark.write_text(wanted + "\n")
        return venv


def _site_packages(venv: Path) -> Path:
    """The venv's site-packages: LNbits must run from there (it serves ``lnbits/static`` relative to cwd)."""
    done = subprocess.run([str(_bin(venv, "python")), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, timeout=60, check=True)
    return Path(done.stdout.strip())


@dataclass(frozen=True, slots=True)
class Wallet:
    id: str
    adminkey: str
    inkey: str
    name: str


class LNbits:
    """A running LNbits with an admin account, a merchant wallet and a funded payer wallet."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log
        self.http = httpx.Client(base_url=url, timeout=30)
        self.token = ""
        self.merchant: Wallet | None = None
        self.payer: Wallet | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until LNbits answers HTTP (before first_install it redirects everything: any answer counts)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"LNbits exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.http.get("/api/v1/health", timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"LNbits not answering on {self.url} after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.3)  # LNbits rate-limits per IP; stay gentle

    def stop(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        else:  # the leader is gone; make sure no child of its group survives
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    # -- API ---------------------------------------------------------------------------------------

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise AssertionError(f"LNbits {response.request.method} {response.request.url.path} -> "
                                 f"{response.status_code}: {response.text[:500]}")
        return response.json()

    def setup(self, payer_sats: int = 1000) -> None:
        """First install (admin user), a merchant wallet and a payer wallet funded with ``payer_sats``."""
        password = secrets.token_urlsafe(16)
        auth = self._json(self.http.put("/api/v1/auth/first_install", json={
            "username": "admin", "password": password, "password_repeat": password}))
        self.token = auth["access_token"]
        self.merchant = self.create_wallet("merchant")
        self.payer = self.create_wallet("payer")
        self._json(self.http.put("/users/api/v1/balance", headers=self._bearer,
                                 json={"id": self.payer.id, "amount": payer_sats}))
        balance = self.balance_msat(self.payer)
        if balance != payer_sats * 1000:
            raise AssertionError(f"payer balance {balance} msat after funding {payer_sats} sat")

    @property
    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def create_wallet(self, name: str) -> Wallet:
        data = self._json(self.http.post("/api/v1/account", headers=self._bearer, json={"name": name}))
        return Wallet(data["id"], data["adminkey"], data["inkey"], data["name"])

    def balance_msat(self, wallet: Wallet) -> int:
        return int(self._json(self.http.get("/api/v1/wallet", headers={"X-Api-Key": wallet.inkey}))["balance"])

    def lookup(self, payment_hash: str, wallet: Wallet | None = None) -> dict[str, Any]:
        """``GET /api/v1/payments/{hash}`` as ``wallet`` (default: the merchant): ``paid``, ``preimage``, ..."""
        key = (wallet or self.merchant).inkey
        return self._json(self.http.get(f"/api/v1/payments/{payment_hash}", headers={"X-Api-Key": key}))

    def pay(self, bolt11: str, wallet: Wallet | None = None) -> str:
        """Pay ``bolt11`` from ``wallet`` (default: the payer); returns the hex preimage, checked against
        the payment hash."""
        payer = wallet or self.payer
        data = self._json(self.http.post("/api/v1/payments", headers={"X-Api-Key": payer.adminkey},
                                         json={"out": True, "bolt11": bolt11}))
        if data.get("status") not in (None, "success"):
            raise AssertionError(f"LNbits payment not settled: {json.dumps(data)[:500]}")
        preimage = data.get("preimage") or self.lookup(data["payment_hash"], payer).get("preimage")
        if not preimage or hashlib.sha256(bytes.fromhex(preimage)).hexdigest() != data["payment_hash"]:
            raise AssertionError(f"LNbits returned no valid preimage: {json.dumps(data)[:500]}")
        return preimage


@contextlib.contextmanager
def running_lnbits(data_dir: Path, payer_sats: int = 1000, env: dict[str, str] | None = None) -> Iterator[LNbits]:
    """Install (or reuse) LNbits, start it on a free loopback port with FakeWallet, set it up, and stop
    its whole process group at the end. ``env`` overrides LNbits settings (``LNBITS_*``).

    Raises:
        LNbitsUnavailable: LNbits could not be installed (the caller decides: skip, or fail under CI).
    """
    venv = ensure_venv()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    overrides = env or {}
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("LNBITS_", "SOVEREIGN_MCP_"))}
    env.update({
        "LNBITS_DATA_FOLDER": str(data_dir),
        "LNBITS_BACKEND_WALLET_CLASS": "FakeWallet",
        "LNBITS_ADMIN_UI": "true",
        "LNBITS_RATE_LIMIT_NO": "100000",
        # no outbound traffic: no price feeds, no extension manifests
        "LNBITS_PRICE_AGGREGATOR_ENABLED": "false",
        "LNBITS_EXCHANGE_RATE_PROVIDERS": "[]",
        "LNBITS_EXTENSIONS_MANIFESTS": "[]",
        "LNBITS_WASM_EXTENSIONS_MANIFESTS": "[]",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    })
    log = data_dir / "lnbits.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(_bin(venv, "lnbits")), "--host", "127.0.0.1", "--port", str(port)],
                                   cwd=_site_packages(venv), env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    lnbits = LNbits(f"http://127.0.0.1:{port}", process, log)
    try:
        lnbits.wait_ready()
        lnbits.setup(payer_sats)
        yield lnbits
    finally:
        lnbits.stop()


def main(argv: list[str]) -> int:
    if argv[:1] != ["install"]:
        print("usage: python -m tests.fakes.lnbits_harness install", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        venv = ensure_venv()
    except LNbitsUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"LNbits {LNBITS_VERSION} ready in {venv} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
