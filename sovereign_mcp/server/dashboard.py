"""``/dashboard``: the operator dashboard's routes (the logic lives in :mod:`sovereign_mcp.dashboard`).

* ``GET /dashboard``: the page for a logged-in operator, else the login form (no data);
  ``POST /dashboard/login`` exchanges an operator token (form field ``token``) for a session cookie;
  ``POST /dashboard/logout`` ends it.
* ``GET /dashboard/fragment``: the panels as HTML (what the page polls); ``GET /dashboard/api/overview`` and
  ``/dashboard/api/{gpu,jobs,earnings,index,limits,actions}`` the same data as JSON;
  ``GET /dashboard/api/jobs/{job_id}`` one job; ``GET /dashboard/jobs/{job_id}/artifacts/{name}`` a file.
* ``POST /dashboard/api/gpu/{name}/start|stop`` (202, runs in the background), ``/dashboard/api/jobs/{id}/
  cancel|retry``, ``/dashboard/api/index/rebuild`` (202), ``/dashboard/api/tokens/{id}/revoke``.
* ``GET /dashboard/static/{file}``: the page's CSS, script and icon (nothing is fetched from another host).

Without a live session every data route answers ``401 {"error": ...}``; a POST without the session's CSRF
token (header ``X-CSRF-Token`` or form field ``csrf``) or from another origin answers 403. Bad input gets a
JSON ``{"error": ...}`` with a 4xx status, never a stack trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastmcp import FastMCP
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from sovereign_mcp.auth.tokens import OPERATOR, PREFIX
from sovereign_mcp.auth.verifier import OperatorTokenVerifier, verifier_for
from sovereign_mcp.config import Settings
from sovereign_mcp.dashboard import render, views
from sovereign_mcp.dashboard.controls import ActionLog, ControlError, Controls
from sovereign_mcp.dashboard.sessions import (
    COOKIE_PATH,
    CSRF_FIELD,
    CSRF_HEADER,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Session,
    SessionStore,
    new_login_nonce,
    same_secret,
)
from sovereign_mcp.db import DatabaseUnavailable
from sovereign_mcp.gate.service import GateService
from sovereign_mcp.payments.service import L402Service
from sovereign_mcp.pipeline.service import PipelineService
from sovereign_mcp.search.service import BlogService

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 8192
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
LOGIN_REFUSED = "That token is unknown, expired, revoked or not an operator token."
Handler = Callable[[Request, Session], Awaitable[Response]]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=SECURITY_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def same_origin(request: Request, allowed: Sequence[str] = ()) -> bool:
    """A browser's ``Origin`` (or ``Referer``) must name this host, or be one of ``allowed``
    (``server.allowed_origins``: the public ``https://host`` of a reverse proxy that rewrites ``Host``);
    requests without either pass (curl)."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin != "null"
    parts = urlsplit(origin)
    if f"{parts.scheme}://{parts.netloc}".lower() in {a.rstrip("/").lower() for a in allowed}:
        return True
    return parts.netloc.lower() == (request.headers.get("host") or "").lower()


async def _form(request: Request) -> dict[str, str]:
    """A small ``application/x-www-form-urlencoded`` body as a dict (first value per key).

    Raises:
        ControlError: 413 body over :data:`MAX_FORM_BYTES`.
    """
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ControlError(413, f"form larger than {MAX_FORM_BYTES} bytes")
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {k: v[0] for k, v in parsed.items() if v}


def register_dashboard(mcp: FastMCP, settings: Settings, pipeline: PipelineService, blog: BlogService,
                       gates: GateService, payments: L402Service | None = None,
                       clock: Callable[[], float] = time.time) -> Controls:
    """Attach the ``/dashboard`` routes to ``mcp``'s HTTP app; returns the :class:`Controls` they use.

    Operator tokens are verified like bearer tokens (:func:`~sovereign_mcp.auth.verifier.verifier_for`);
    Sessions are kept in memory for ``dashboard.session_hours`` by ``clock`` (unix s; injectable for tests).
    """
    config = settings.dashboard
    origins = settings.server.allowed_origins
    verifiers: list[OperatorTokenVerifier] = []

    def verifier() -> OperatorTokenVerifier:
        """Opened at the first login, so a server nobody logs in to creates no token store."""
        if not verifiers:
            verifiers.append(verifier_for(settings))
        return verifiers[0]

    def token_active(token_id: str) -> bool:
        record = verifier().store.get(token_id)
        return record is not None and record.state() == "active"

    store = SessionStore(config.session_hours * 3600, config.max_sessions, clock, still_valid=token_active)
    src = views.Sources(settings, pipeline, blog, gates, payments)
    controls = Controls(src, ActionLog())

    async def current(request: Request) -> Session | None:
        return await run_in_threadpool(store.get, request.cookies.get(SESSION_COOKIE))

    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        nonce = new_login_nonce()
        response = HTMLResponse(render.render_login(nonce, error), status_code=status, headers=SECURITY_HEADERS)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=1800, path=COOKIE_PATH, httponly=True, samesite="strict",
                            secure=_secure(request))
        return response

    def route(path: str, methods: list[str], handler: Handler, *, csrf: bool = False) -> None:
        async def endpoint(request: Request) -> Response:
            try:
                session = await current(request)
                if session is None:
                    return _error(401, "no dashboard session: log in at /dashboard with an operator token")
                if csrf:
                    given = request.headers.get(CSRF_HEADER)
                    if not given and "form" in request.headers.get("content-type", ""):
                        given = (await _form(request)).get(CSRF_FIELD)
                    if not same_origin(request, origins) or not same_secret(given, session.csrf):
                        return _error(403, "missing or invalid CSRF token (send the page's X-CSRF-Token)")
                return await handler(request, session)
            except ControlError as exc:
                return _error(exc.status, exc.message)
            except DatabaseUnavailable as exc:
                return _error(503, f"database unavailable: {exc}")
            except (KeyError, ValueError) as exc:
                return _error(400, f"bad request: {exc}")

        mcp.custom_route(path, methods=methods)(endpoint)

    async def gather() -> render.Overview:
        return await run_in_threadpool(render.overview, src, controls.actions, config)

    # -- pages and login ------------------------------------------------------------------------------
    @mcp.custom_route("/dashboard", methods=["GET"])
    async def page(request: Request) -> Response:
        session = await current(request)
        if session is None:
            return login_page(request)
        html = render.render_page(await gather(), session.csrf, config.refresh_seconds, session.label)
        return HTMLResponse(html, headers=SECURITY_HEADERS)

    @mcp.custom_route("/dashboard/login", methods=["POST"])
    async def login(request: Request) -> Response:
        try:
            form = await _form(request)
        except ControlError as exc:
            return _error(exc.status, exc.message)
        if not same_origin(request, origins) or not same_secret(form.get(CSRF_FIELD),
                                                                request.cookies.get(LOGIN_COOKIE, "")):
            return login_page(request, "The login form expired or came from another page; try again.", 403)
        token = (form.get("token") or "").strip()
        try:
            access = await verifier().verify_token(token) if token else None
        except DatabaseUnavailable as exc:
            return _error(503, f"database unavailable: {exc}")
        if access is None or OPERATOR not in access.scopes:
            log.warning("dashboard login refused from %s", request.client.host if request.client else "?")
            return login_page(request, LOGIN_REFUSED, 401)
        session = store.create(access.client_id if token.startswith(PREFIX) else None,
                               str(access.claims.get("label") or access.client_id), access.expires_at)
        response = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(SESSION_COOKIE, session.session_id, max_age=int(session.expires_at - session.created_at),
                            path=COOKIE_PATH, httponly=True, samesite="strict", secure=_secure(request))
        response.delete_cookie(LOGIN_COOKIE, path=COOKIE_PATH)
        log.info("dashboard login with operator token %s", access.client_id)
        return response

    async def logout(request: Request, session: Session) -> Response:
        store.end(session.session_id)
        response = RedirectResponse("/dashboard", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)
        return response

    route("/dashboard/logout", ["POST"], logout, csrf=True)

    @mcp.custom_route("/dashboard/static/{name}", methods=["GET"])
    async def static(request: Request) -> Response:
        found = render.static_file(request.path_params["name"])
        if found is None:
            return _error(404, "no such file")
        content, kind = found
        return Response(content, media_type=kind, headers={"Cache-Control": "max-age=3600",
                                                           "X-Content-Type-Options": "nosniff"})

    # -- data -------------------------------------------------------------------------------------------
    async def fragment(request: Request, session: Session) -> Response:
        return HTMLResponse(render.render_panels(await gather()), headers=SECURITY_HEADERS)

    route("/dashboard/fragment", ["GET"], fragment)

    def json_view(build: Callable[[], Any]) -> Handler:
        async def handler(request: Request, session: Session) -> Response:
            result = await run_in_threadpool(build)
            data = [r.model_dump(mode="json") for r in result] if isinstance(result, list) else \
                result.model_dump(mode="json")
            return JSONResponse(data, headers=SECURITY_HEADERS)
        return handler

    route("/dashboard/api/overview", ["GET"], json_view(lambda: render.overview(src, controls.actions, config)))
    route("/dashboard/api/gpu", ["GET"], json_view(lambda: views.gpu_panel(src, config.gpu_events)))
    route("/dashboard/api/jobs", ["GET"], json_view(lambda: views.jobs_panel(src, config.recent_jobs,
                                                                                config.chart_days)))
    route("/dashboard/api/earnings", ["GET"], json_view(lambda: views.earnings_panel(src, config.chart_days)))
    route("/dashboard/api/index", ["GET"], json_view(lambda: views.index_panel(src)))
    route("/dashboard/api/limits", ["GET"], json_view(lambda: views.limits_panel(src)))
    route("/dashboard/api/actions", ["GET"], json_view(controls.actions.items))

    async def one_job(request: Request, session: Session) -> Response:
        job_id = request.path_params["job_id"]

        def build() -> views.JobView:
            from sovereign_mcp.dashboard.eta import expected_durations

            try:
                job = pipeline.status(job_id)
            except KeyError:
                raise ControlError(404, f"no pipeline job {job_id[:64]!r}") from None
            service_of = {role: pipeline.gpu_service_for(role) for role in ("sglang", "voxtral", "comfyui")}
            return views.job_view(job, expected_durations(pipeline.store.step_durations()), src.now(), service_of)

        return JSONResponse((await run_in_threadpool(build)).model_dump(mode="json"), headers=SECURITY_HEADERS)

    route("/dashboard/api/jobs/{job_id}", ["GET"], one_job)

    async def artifact(request: Request, session: Session) -> Response:
        job_id, name = request.path_params["job_id"], request.path_params["name"]
        try:
            path, mime = await run_in_threadpool(pipeline.artifact, job_id, name)
        except KeyError:
            raise ControlError(404, f"no artifact {name[:64]!r} for job {job_id[:64]!r}") from None
        disposition = "inline" if mime.startswith("image/") else "attachment"
        headers = {"Content-Disposition": f'{disposition}; filename="{path.name}"', "X-Content-Type-Options": "nosniff",
                   "Cache-Control": "private, max-age=300"}
        return FileResponse(path, media_type=mime, headers=headers)

    route("/dashboard/jobs/{job_id}/artifacts/{name}", ["GET"], artifact)

    # -- controls -----------------------------------------------------------------------------------------
    async def gpu_control(request: Request, session: Session) -> Response:
        name, action = request.path_params["name"], request.path_params["action"]
        if action not in ("start", "stop"):
            raise ControlError(404, f"unknown GPU action {action[:20]!r}: use start or stop")
        run = controls.start_service if action == "start" else controls.stop_service
        item = await run_in_threadpool(run, name)
        log.info("dashboard: %s %s requested by %s", action, name, session.label)
        return JSONResponse({**item.model_dump(mode="json"), "message": f"{action} {name} requested; see "
                             "Recent controls"}, status_code=202, headers=SECURITY_HEADERS)

    route("/dashboard/api/gpu/{name}/{action}", ["POST"], gpu_control, csrf=True)

    async def job_control(request: Request, session: Session) -> Response:
        job_id, action = request.path_params["job_id"], request.path_params["action"]
        if action not in ("cancel", "retry"):
            raise ControlError(404, f"unknown job action {action[:20]!r}: use cancel or retry")
        run = controls.cancel_job if action == "cancel" else controls.retry_job
        status = await run_in_threadpool(run, job_id)
        log.info("dashboard: %s job %s by %s", action, job_id, session.label)
        return JSONResponse({"job_id": status.job_id, "state": status.state,
                             "message": f"job {status.job_id}: {status.message or status.state}"},
                            headers=SECURITY_HEADERS)

    route("/dashboard/api/jobs/{job_id}/{action}", ["POST"], job_control, csrf=True)

    async def rebuild(request: Request, session: Session) -> Response:
        item = await run_in_threadpool(controls.rebuild_index)
        return JSONResponse({**item.model_dump(mode="json"), "message": "index rebuild started"}, status_code=202,
                            headers=SECURITY_HEADERS)

    route("/dashboard/api/index/rebuild", ["POST"], rebuild, csrf=True)

    async def revoke(request: Request, session: Session) -> Response:
        message = await run_in_threadpool(controls.revoke_token, request.path_params["token_id"])
        log.info("dashboard: %s by %s", message, session.label)
        return JSONResponse({"message": message}, headers=SECURITY_HEADERS)

    route("/dashboard/api/tokens/{token_id}/revoke", ["POST"], revoke, csrf=True)
    return controls
