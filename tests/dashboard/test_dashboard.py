"""The operator dashboard (issue 15) without a browser: sessions, CSRF, the SVG charts, the ETA, and the
``/dashboard`` routes in process (Starlette's TestClient over the real app) on the loopback stand-ins of
tests/pipeline/test_pipeline.py (GPU services as real processes started and stopped by the real GPU manager)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sovereign_mcp.auth.tokens import OperatorTokenStore
from sovereign_mcp.dashboard.charts import bar_chart, day_series
from sovereign_mcp.dashboard.eta import estimate, expected_durations
from sovereign_mcp.dashboard.sessions import SessionStore, same_secret
from sovereign_mcp.payments.store import TokenRecord
from sovereign_mcp.pipeline.models import JobStatus, StepOut
from sovereign_mcp.server.bootstrap import Components, build_components, build_mcp
from sovereign_mcp.server.dashboard import register_dashboard
from tests.pipeline.test_pipeline import ROLES, World

DATA_PATHS = ["/dashboard/api/overview", "/dashboard/api/gpu", "/dashboard/api/jobs", "/dashboard/api/earnings",
              "/dashboard/api/index", "/dashboard/api/limits", "/dashboard/api/actions", "/dashboard/fragment",
              "/dashboard/api/jobs/abc", "/dashboard/jobs/abc/artifacts/hero.png"]
CONTROL_PATHS = ["/dashboard/api/gpu/fake-comfyui/start", "/dashboard/api/gpu/fake-comfyui/stop",
                 "/dashboard/api/jobs/abc/cancel", "/dashboard/api/jobs/abc/retry", "/dashboard/api/index/rebuild",
                 "/dashboard/api/tokens/abc/revoke", "/dashboard/logout"]


# -- sessions, charts, ETA ------------------------------------------------------------------------------

def test_sessions_expire_are_capped_and_end_with_their_token() -> None:
    now = [1_000.0]
    valid = {"t1": True}
    store = SessionStore(3600, max_sessions=2, clock=lambda: now[0], still_valid=lambda tid: valid.get(tid, False))
    a = store.create("t1")
    assert a.expires_at == 4_600 and len(a.session_id) >= 40 and a.csrf != a.session_id
    assert store.get(a.session_id) == a
    short = store.create("t1", token_expires_at=1_500)  # never past the operator token's own expiry
    assert short.expires_at == 1_500
    now[0] = 1_500
    assert store.get(short.session_id) is None
    assert store.get(a.session_id) is not None
    now[0] = 4_600
    assert store.get(a.session_id) is None  # absolute expiry
    b, c = store.create("t1"), store.create(None)  # JWT session: no token check
    store.create(None)  # a third one drops the oldest
    assert store.get(b.session_id) is None and store.get(c.session_id) is not None
    d = store.create("t1")
    valid["t1"] = False  # the operator token was revoked
    assert store.get(d.session_id) is None
    assert store.get(None) is None and store.get("") is None and store.get("nope") is None
    with pytest.raises(ValueError):
        SessionStore(0)


def test_same_secret() -> None:
    assert same_secret("abc", "abc")
    assert not same_secret("abd", "abc") and not same_secret(None, "abc") and not same_secret("", "")
    assert not same_secret("ü", "abc")


def test_bar_chart_is_inline_svg_with_escaped_text() -> None:
    series = day_series([(86_400 * 10 + 5, 21.0), (86_400 * 10 + 50, 21.0), (86_400 * 12, 5.0), (0, 99.0)], 3,
                        86_400 * 12 + 100)
    assert series == [("1970-01-11", 42.0), ("1970-01-12", 0.0), ("1970-01-13", 5.0)]
    svg = bar_chart(series, title="sats <per> day", unit="sats")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 3 and "max 42 sats" in svg
    assert "sats &lt;per&gt; day" in svg and "<per>" not in svg
    assert 'height="0.0"' in svg  # the empty day
    assert "href" not in svg and re.findall(r"https?://[^\"]+", svg) == ["http://www.w3.org/2000/svg"]
    assert bar_chart([], title="none").count("<rect") == 0
    with pytest.raises(ValueError):
        bar_chart(series, title="x", width=10)


def _job(state: str, steps: list[tuple[str, str, float | None, float | None]]) -> JobStatus:
    outs = [StepOut(index=i, name=n, title=n, service=None, state=s, attempt=1, started_at=a, finished_at=b)
            for i, (n, s, a, b) in enumerate(steps)]
    done = sum(1 for o in outs if o.state == "done")
    return JobStatus(job_id="j", kind="article", topic="t", state=state, done_steps=done, total_steps=len(outs),
                     progress=0, created_at=0, updated_at=0, steps=outs)


def test_eta_from_the_median_of_recorded_step_durations() -> None:
    expected = expected_durations([("a", 10.0), ("a", 12.0), ("a", 300.0), ("b", 20.0), ("a", 1.0)], per_step=3)
    assert expected == {"a": 12.0, "b": 20.0}  # median of the newest three: one slow run does not skew it
    job = _job("running", [("a", "done", 0, 12), ("a", "running", 100, None), ("b", "pending", None, None)])
    eta = estimate(job, expected, now=105)
    assert (eta.seconds, eta.exact) == (27.0, True)  # 12 - 5 s already run, + 20
    assert estimate(job, expected, now=200).seconds == 20.0  # an overdue step counts 0
    unknown = _job("queued", [("b", "pending", None, None), ("c", "pending", None, None)])
    eta = estimate(unknown, expected, now=0)
    assert (eta.seconds, eta.exact, eta.unknown_steps) == (20.0, False, ["c"])
    assert estimate(_job("queued", [("c", "pending", None, None)]), expected, 0).seconds is None
    assert estimate(_job("done", [("a", "done", 0, 1)]), expected, 0).seconds is None


# -- the routes in process --------------------------------------------------------------------------------

@dataclass
class Dash:
    world: World
    components: Components
    client: TestClient
    operator: str
    operator_id: str
    clock: list[float]

    def login(self, client: TestClient | None = None, token: str | None = None) -> str:
        """Log in through the form; returns the page's CSRF token."""
        http = client or self.client
        form = http.get("/dashboard")
        nonce = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert nonce, form.text
        answer = http.post("/dashboard/login", data={"csrf": nonce[1], "token": token or self.operator},
                           follow_redirects=False)
        assert answer.status_code == 303, answer.text
        page = http.get("/dashboard")
        found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
        assert found, page.text[:500]
        return found[1]


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dash]:
    world = World(tmp_path_factory.mktemp("dashboard"))
    world.sglang.start()
    (world.root / "corpus").mkdir()
    (world.root / "corpus" / "one.md").write_text("---\ntitle: One\ndate: 2025-01-01\n---\n\n## A\n\nText.\n")
    c = build_components(world.settings())  # payments on, dev backend
    store = OperatorTokenStore.for_settings(world.data_dir, None)
    operator, record = store.create(label="dash-tests")
    store.close()
    clock = [time.time()]
    mcp = build_mcp(c)
    register_dashboard(mcp, c.settings, c.pipeline, c.blog, c.gates, c.payments, clock=lambda: clock[0])
    app = mcp.http_app(path="/mcp")
    with TestClient(app, base_url="http://127.0.0.1:8002") as client:
        yield Dash(world, c, client, operator, record.token_id, clock)
    c.close()
    world.close()


def fresh(dash: Dash) -> TestClient:
    """Another browser (own cookie jar) on the same app."""
    return TestClient(dash.client.app, base_url="http://127.0.0.1:8002")


def test_no_data_without_a_session(dash: Dash) -> None:
    http = fresh(dash)
    page = http.get("/dashboard")
    assert page.status_code == 200 and 'name="token"' in page.text
    assert "fake-comfyui" not in page.text and "sats" not in page.text
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    for path in DATA_PATHS:
        answer = http.get(path)
        assert answer.status_code == 401 and "error" in answer.json(), path
    for path in CONTROL_PATHS:
        assert http.post(path).status_code == 401, path
    http.cookies.set("smcp_dashboard", "forged-session-id", path="/dashboard")
    assert http.get("/dashboard/api/overview").status_code == 401


def test_login_refuses_bad_tokens_and_a_forged_form(dash: Dash) -> None:
    http = fresh(dash)
    nonce = re.search(r'name="csrf" value="([^"]+)"', http.get("/dashboard").text)[1]  # type: ignore[index]
    for token in ("", "smcp_0000000000000000_" + "A" * 43, "not a token", dash.operator + "x"):
        answer = http.post("/dashboard/login", data={"csrf": nonce, "token": token}, follow_redirects=False)
        assert answer.status_code == 401 and "unknown, expired, revoked" in answer.text
        assert "smcp_dashboard=" not in answer.headers.get("set-cookie", "").replace("smcp_dashboard_login", "")
        nonce = re.search(r'name="csrf" value="([^"]+)"', answer.text)[1]  # type: ignore[index]  # a fresh form
    nonce = re.search(r'name="csrf" value="([^"]+)"', http.get("/dashboard").text)[1]  # type: ignore[index]
    forged = http.post("/dashboard/login", data={"csrf": "x" + nonce, "token": dash.operator}, follow_redirects=False)
    assert forged.status_code == 403
    other_site = http.post("/dashboard/login", data={"csrf": nonce, "token": dash.operator},
                           headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert other_site.status_code == 403
    assert http.get("/dashboard/api/overview").status_code == 401


def test_login_then_overview_json(dash: Dash) -> None:
    http = fresh(dash)
    http.get("/dashboard")
    nonce = http.cookies.get("smcp_dashboard_login")
    answer = http.post("/dashboard/login", data={"csrf": nonce, "token": dash.operator}, follow_redirects=False)
    assert answer.status_code == 303
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith("smcp_dashboard=") and "httponly" in cookie and "samesite=strict" in cookie
    assert "path=/dashboard" in cookie and "secure" not in cookie  # plain http on loopback
    data = http.get("/dashboard/api/overview").json()
    assert [s["name"] for s in data["gpu"]["services"]] == list(ROLES.values())
    assert {s["role"] for s in data["gpu"]["services"]} == set(ROLES)
    assert data["gpu"]["mem_available_gb"] == pytest.approx(100.0, abs=0.1)
    assert data["gpu"]["fits_now"] == list(ROLES.values())
    assert all("Start " in s["start_plan"] and "Stop " in s["stop_plan"] for s in data["gpu"]["services"])
    assert data["index"]["articles"] == 1 and data["index"]["kb_entries"] > 0
    assert data["earnings"]["enabled"] is True and data["limits"]["enabled"] is True
    assert data["jobs"]["chart_svg"].startswith("<svg") and data["earnings"]["chart_svg"].startswith("<svg")
    page = http.get("/dashboard")
    assert page.status_code == 200 and "fake-comfyui" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing from another host


def test_csrf_missing_forged_or_cross_origin_is_refused(dash: Dash) -> None:
    http = fresh(dash)
    csrf = dash.login(http)
    for headers in ({}, {"X-CSRF-Token": ""}, {"X-CSRF-Token": csrf[:-1] + ("A" if csrf[-1] != "A" else "B")},
                    {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}):
        answer = http.post("/dashboard/api/index/rebuild", headers=headers)
        assert answer.status_code == 403 and "CSRF" in answer.json()["error"], headers
    other = fresh(dash)
    other_csrf = dash.login(other)
    assert http.post("/dashboard/api/index/rebuild", headers={"X-CSRF-Token": other_csrf}).status_code == 403
    answer = http.post("/dashboard/api/index/rebuild", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 202 and answer.json()["action"] == "rebuild"
    wait_action(http, answer.json()["id"])
    again = http.post("/dashboard/logout", data={"csrf": "wrong"}, follow_redirects=False)
    assert again.status_code == 403
    out = http.post("/dashboard/logout", data={"csrf": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert http.get("/dashboard/api/overview").status_code == 401


def test_session_expiry_and_token_revocation(dash: Dash) -> None:
    http = fresh(dash)
    dash.login(http)
    assert http.get("/dashboard/api/gpu").status_code == 200
    dash.clock[0] += 8 * 3600 + 1  # dashboard.session_hours = 8
    try:
        assert http.get("/dashboard/api/gpu").status_code == 401
        assert 'name="token"' in http.get("/dashboard").text
    finally:
        dash.clock[0] = time.time()
    store = OperatorTokenStore.for_settings(dash.world.data_dir, None)
    token, record = store.create(label="to revoke")
    dash.login(http, token)
    assert http.get("/dashboard/api/gpu").status_code == 200
    store.revoke(record.token_id)
    store.close()
    assert http.get("/dashboard/api/gpu").status_code == 401


def wait_action(http: TestClient, action_id: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [a for a in http.get("/dashboard/api/actions").json() if a["id"] == action_id]
        if found and found[0]["state"] != "running":
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"action {action_id} still running after {timeout} s")


def test_jobs_artifacts_cancel_and_retry(dash: Dash) -> None:
    http = fresh(dash)
    csrf = dash.login(http)
    headers = {"X-CSRF-Token": csrf}
    job_id = dash.components.pipeline.submit("hero_image", "a quiet rack").job_id
    deadline = time.monotonic() + 60
    while (job := http.get(f"/dashboard/api/jobs/{job_id}").json())["state"] != "done":
        assert job["state"] in ("queued", "running", "waiting") and time.monotonic() < deadline, job
        time.sleep(0.1)
    assert (job["step"], job["total_steps"], job["kind"]) == (2, 2, "hero_image")  # the image, then its alt text
    art, alt = job["artifacts"]
    assert alt["name"] == "hero.alt.json" and not alt["is_image"]
    assert job["hero_image_url"] == art["url"] and art["is_image"]
    image = http.get(art["url"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")
    jobs = http.get("/dashboard/api/jobs").json()
    assert job_id in [j["job_id"] for j in jobs["recent"]] and jobs["counts"]["done"] >= 1
    assert sum(d["done"] for d in jobs["per_day"]) >= 1
    assert http.get(f"/dashboard/jobs/{job_id}/artifacts/nope.png").status_code == 404
    assert http.get("/dashboard/api/jobs/nosuchjob").status_code == 404
    assert http.post(f"/dashboard/api/jobs/{job_id}/retry", headers=headers).status_code == 409  # done
    assert http.post(f"/dashboard/api/jobs/{job_id}/cancel", headers=headers).json()["state"] == "done"
    assert http.post("/dashboard/api/jobs/nosuchjob/cancel", headers=headers).status_code == 404
    assert http.post(f"/dashboard/api/jobs/{job_id}/explode", headers=headers).status_code == 404
    # ETA from recorded durations: a second image job now has the hero_image step's history
    queued = dash.components.pipeline.submit("hero_image", "another rack").job_id
    cancelled = http.post(f"/dashboard/api/jobs/{queued}/cancel", headers=headers).json()
    if cancelled["state"] == "cancelled":
        retried = http.post(f"/dashboard/api/jobs/{queued}/retry", headers=headers)
        assert retried.status_code == 200 and retried.json()["state"] in ("queued", "running", "done")
        view = http.get(f"/dashboard/api/jobs/{queued}").json()
        if view["state"] == "queued":
            assert view["eta"]["exact"] is True and view["eta"]["seconds"] is not None


def test_gpu_start_and_stop_go_through_the_manager(dash: Dash) -> None:
    http = fresh(dash)
    headers = {"X-CSRF-Token": dash.login(http)}
    assert http.post("/dashboard/api/gpu/nope/start", headers=headers).status_code == 404
    assert http.post("/dashboard/api/gpu/fake-voxtral/reboot", headers=headers).status_code == 404
    started = http.post("/dashboard/api/gpu/fake-voxtral/start", headers=headers)
    assert started.status_code == 202
    result = wait_action(http, started.json()["id"])
    assert result["state"] == "done", result
    gpu = http.get("/dashboard/api/gpu").json()
    states = {s["name"]: s["state"] for s in gpu["services"]}
    assert states["fake-voxtral"] == "running" and gpu["active"] == ["fake-voxtral"]  # one at a time
    voxtral = next(s for s in gpu["services"] if s["name"] == "fake-voxtral")
    assert voxtral["last_ready_at"] is not None and voxtral["leases"] == 0
    other = next(s for s in gpu["services"] if s["name"] == "fake-comfyui")
    assert other["stops"] == ["fake-voxtral"] and "stops fake-voxtral first" in other["start_plan"]
    assert any(e["event"] == "lease_granted" and e["job_id"] == "dashboard" for e in gpu["events"])
    stopped = http.post("/dashboard/api/gpu/fake-voxtral/stop", headers=headers)
    assert stopped.status_code == 202
    assert wait_action(http, stopped.json()["id"])["state"] == "done"
    states = {s["name"]: s["state"] for s in http.get("/dashboard/api/gpu").json()["services"]}
    assert set(states.values()) == {"stopped"}


def test_earnings_and_token_revoke(dash: Dash) -> None:
    http = fresh(dash)
    headers = {"X-CSRF-Token": dash.login(http)}
    store = dash.components.payments.store  # type: ignore[union-attr]
    now = int(time.time())
    for i, (tools, price, paid) in enumerate([("validate_quality", 21, True), ("validate_quality", 21, True),
                                              ("trigger_pipeline", 500, True), ("validate_quality", 21, False)]):
        store.add(TokenRecord(token_id=f"{i:02x}" * 16, payment_hash=f"{i + 10:02x}" * 32, root_key=b"k" * 32,
                              bolt11="lnbc", tools=tools, price_sat=price, max_calls=5, state="paid" if paid else
                              "pending", created_at=now - 10, expires_at=now + 600, valid_until=now + 86_400,
                              paid_at=now - 5 if paid else None))
    earnings = http.get("/dashboard/api/earnings").json()
    assert earnings["sats_total"] == 542 and earnings["outstanding"] == 3
    assert (earnings["invoices_issued"], earnings["invoices_paid"]) == (4, 3)
    today = earnings["per_day"][-1]
    assert today["sats"] == 542 and today["by_tool"] == {"validate_quality": 42, "trigger_pipeline": 500}
    assert "max 542 sats" in earnings["chart_svg"]
    token_id = "00" * 16
    assert http.post(f"/dashboard/api/tokens/{token_id}/revoke", headers=headers).status_code == 200
    assert store.get(token_id).state == "revoked"  # type: ignore[union-attr]
    assert http.post(f"/dashboard/api/tokens/{token_id}/revoke", headers=headers).status_code == 404
    assert http.post("/dashboard/api/tokens/zz<script>/revoke", headers=headers).status_code == 404
    assert http.get("/dashboard/api/earnings").json()["sats_total"] == 542  # revoked tokens were still paid
    fragment = http.get("/dashboard/fragment")  # the HTML the page polls renders every panel
    assert fragment.status_code == 200 and 'id="token-0101' in fragment.text and "542 sats" in fragment.text
    assert 'class="hero"' in fragment.text and "<svg" in fragment.text and 'id="svc-fake-sglang"' in fragment.text


def test_static_assets_are_served_here(dash: Dash) -> None:
    http = fresh(dash)
    for name, kind in (("dashboard.css", "text/css"), ("dashboard.js", "text/javascript"), ("icon.svg", "image/svg")):
        answer = http.get(f"/dashboard/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind), name
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", answer.text), name
    for bad in ("nope.css", "..%2Fsessions.py", "sessions.py", ".hidden"):
        assert http.get(f"/dashboard/static/{bad}").status_code == 404, bad


def test_package_ships_templates_and_static() -> None:
    root = Path(__file__).resolve().parents[2] / "sovereign_mcp" / "dashboard"
    assert {p.name for p in (root / "templates").iterdir()} >= {"login.html", "dashboard.html", "panels.html"}
    assert {p.name for p in (root / "static").iterdir()} >= {"dashboard.css", "dashboard.js", "icon.svg"}


def test_same_origin_accepts_this_host_and_the_proxys_public_origin() -> None:
    from starlette.requests import Request

    from sovereign_mcp.server.dashboard import same_origin

    def request(origin: str | None, host: str = "127.0.0.1:8002") -> Request:
        headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
        return Request({"type": "http", "method": "POST", "path": "/dashboard/login", "headers": headers})

    assert same_origin(request("http://127.0.0.1:8002")) and same_origin(request(None))
    assert not same_origin(request("https://evil.example")) and not same_origin(request("null"))
    behind = request("https://blog.example", host="127.0.0.1:8002")  # the proxy rewrote Host
    assert not same_origin(behind) and same_origin(behind, ["https://blog.example/"])
    assert not same_origin(request("https://evil.example"), ["https://blog.example"])
