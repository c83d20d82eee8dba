"""The web view's HTTP side (Starlette): the page, its static files, the live stream and
the authenticated actions.

Routes:

* ``GET /`` the page; ``/static/...`` its scripts, styles and the vendored uPlot (nothing
  from a CDN: plants are offline);
* ``GET /api/layout`` the line diagram (``layout.line_layout``);
* ``GET /api/me`` who is logged in, the CSRF token of the session, what each action
  needs (``auth.permissions``);
* ``GET /events`` server-sent events: first ``{"snapshot", "hello": {phases}}`` and one
  ``{"history": {series: rows}}`` per series (``Hub.hello``), then snapshots and sample
  batches as they come (``hub.Hub``);
* ``POST /api/login`` / ``/api/logout``; ``POST /api/action`` {action, reason, module?,
  alarm?}: a control request like the CLI's (``host/control.py``), answered with the
  coordinator's {ok, reason}.

Every POST is checked for its Origin; every POST but the log-in needs the session's CSRF
token (``auth.py``).  Responses never carry a password hash or a key.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from host.view import auth
from host.view.auth import CSRF_HEADER, SESSION_COOKIE, Refused

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE_S = 15.0
REPLY_WAIT_S = 12.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ViewContext:
    """What the app serves: ``hub`` (live data), ``feed`` (``request(...)`` sends control
    requests), ``layout`` (the diagram), ``sessions`` (auth.Sessions), ``has_key`` (the
    operator key is loaded: resume possible), ``tls`` (cookies Secure), ``line_stop``
    (None: the line stop goes to the coordinator through ``feed``; else a blocking
    callable(who, reason, **identity) -> {ok, reason}, run on a worker thread)."""

    def __init__(self, hub, feed, layout, sessions, has_key=False, tls=False, line_stop=None):
        self.hub = hub
        self.feed = feed
        self.layout = layout
        self.sessions = sessions
        self.has_key = has_key
        self.tls = tls
        self.line_stop = line_stop


def _session(request: Request) -> tuple[str | None, dict | None]:
    token = request.cookies.get(SESSION_COOKIE)
    ctx: ViewContext = request.app.state.ctx
    return token, ctx.sessions.get(token)


def _check_post(request: Request, session: dict | None, csrf: bool = True) -> None:
    scheme = "https" if request.app.state.ctx.tls else "http"
    auth.check_origin(request.headers.get("origin"), request.headers.get("host"), scheme)
    if csrf:
        if session is None:
            raise Refused(401, "log in to act on the line (the view is read-only without it)")
        auth.check_csrf(session, request.headers.get(CSRF_HEADER))


def _refusal(exc: Refused) -> JSONResponse:
    return JSONResponse({"ok": False, "reason": str(exc)}, status_code=exc.status)


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


async def layout(request: Request) -> Response:
    return JSONResponse(request.app.state.ctx.layout, headers=SECURITY_HEADERS)


async def me(request: Request) -> Response:
    ctx: ViewContext = request.app.state.ctx
    _, session = _session(request)
    body = {
        "user": None if session is None else session["user"],
        "full_name": None if session is None else session["full_name"],
        "role": None if session is None else session["role"],
        "csrf": None if session is None else session["csrf"],
        "permissions": auth.permissions(session, ctx.has_key),
        "line": ctx.layout["line"],
    }
    return JSONResponse(body, headers=SECURITY_HEADERS)


async def _json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise Refused(400, "the request body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the request body is not a JSON object")
    return body


async def login(request: Request) -> Response:
    ctx: ViewContext = request.app.state.ctx
    try:
        _check_post(request, None, csrf=False)
        body = await _json_body(request)
        # argon2 takes ~50 ms of CPU: off the event loop, so the stream keeps flowing.
        token, session = await asyncio.to_thread(
            ctx.sessions.login, str(body.get("user", "")), str(body.get("password", ""))
        )
    except Refused as exc:
        return _refusal(exc)
    response = JSONResponse({"ok": True, "user": session["user"], "role": session["role"]})
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=auth.SESSION_S,
        httponly=True,
        samesite="strict",
        secure=ctx.tls,
        path="/",
    )
    return response


async def logout(request: Request) -> Response:
    token, session = _session(request)
    try:
        _check_post(request, session)
    except Refused as exc:
        return _refusal(exc)
    request.app.state.ctx.sessions.logout(token)
    response = JSONResponse({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def action(request: Request) -> Response:
    """A control request from the page: who is logged in, why, what; the coordinator's
    reply (or, for the line stop over a broker, every module's answer)."""
    ctx: ViewContext = request.app.state.ctx
    _, session = _session(request)
    try:
        _check_post(request, session)
        body = await _json_body(request)
        name, reason = str(body.get("action", "")), str(body.get("reason", "")).strip()
        auth.check_action(session, name, reason, ctx.has_key)
        args = {"role": session["role"], "auth": "password"}
        if name == "ack":
            module, alarm = body.get("module"), body.get("alarm")
            if not isinstance(module, str) or not isinstance(alarm, str) or not module or not alarm:
                raise Refused(400, "ack needs the module and the alarm")
            args.update(module=module, alarm=alarm)
    except Refused as exc:
        return _refusal(exc)
    if name == "stop" and ctx.line_stop is not None:
        reply = await asyncio.to_thread(ctx.line_stop, session["user"], reason, **args)
    else:
        future = ctx.feed.request(name, session["user"], reason, **args)
        try:
            reply = await asyncio.wait_for(asyncio.wrap_future(future), REPLY_WAIT_S)
        except TimeoutError:
            reply = {"ok": False, "reason": "no coordinator answered"}
    return JSONResponse(
        {"ok": bool(reply["ok"]), "reason": reply.get("reason", "")},
        status_code=200 if reply["ok"] else 409,
    )


async def events(request: Request) -> Response:
    """Server-sent events: the hello, then what the hub sends this viewer."""
    hub = request.app.state.ctx.hub
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    viewer = hub.join(lambda: loop.call_soon_threadsafe(ready.set))

    async def stream():
        try:
            for message in hub.hello():
                yield f"data: {message}\n\n"
            while not hub.closed:
                try:
                    await asyncio.wait_for(ready.wait(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                ready.clear()
                for message in viewer.take():
                    yield f"data: {message}\n\n"
        finally:
            hub.leave(viewer)

    headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


def make_app(ctx: ViewContext) -> Starlette:
    app = Starlette(
        routes=[
            Route("/", page),
            Route("/api/layout", layout),
            Route("/api/me", me),
            Route("/api/login", login, methods=["POST"]),
            Route("/api/logout", logout, methods=["POST"]),
            Route("/api/action", action, methods=["POST"]),
            Route("/events", events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    app.state.ctx = ctx
    return app
