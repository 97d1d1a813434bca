"""The labeling web app (Starlette, served by uvicorn): one page and a two-route JSON API.

- ``GET /``: the page (``templates/index.html``, ``static/label.js``); completions are inserted with
  ``textContent`` only, and a Content-Security-Policy forbids inline scripts, so model output is always text;
- ``GET /api/state?annotator=ID``: that annotator's next comparison (never its gold scores), progress, and
  agreement between annotators;
- ``POST /api/judge``: record one judgment. Refused with 403 unless it carries this server session's CSRF token
  (header ``X-CSRF-Token``, embedded in the page) and, when it has an ``Origin``, comes from this server's own
  origin; 415 unless it is JSON; 400 (naming the field) unless every field fits ``schema.JUDGE_FIELDS``.

Every request's body is limited (``max_body_bytes``, checked from ``Content-Length`` before a byte is read: 413, and
the connection is closed); see ``limits``. Error responses of the API are ``{"error": message, "field": name}``.

Safe by default: binds 127.0.0.1 and answers only requests addressed to a loopback host name (no DNS rebinding);
with ``access_token`` every request must present it (``?token=`` once, then a cookie, or ``Authorization:
Bearer``), and only then may the server bind another address.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import sys
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlencode

from alignzoo.errors import AlignzooError
from alignzoo.label.agreement import inter_annotator
from alignzoo.label.limits import (DEFAULT_MAX_BODY_KB, annotator_problem, body_problem, origin_problem,
                                   token_problem)
from alignzoo.label.schema import RequestError, check_fields, validate_judgment
from alignzoo.label.store import RATING_SCALE, LabelSession, latest_judgments

HERE = Path(__file__).resolve().parent
COOKIE = "alignzoo_label_token"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def state_of(session: LabelSession, annotator: str) -> dict[str, Any]:
    """What the page shows an annotator: the next comparison (text only), progress, annotators, agreement."""
    item = session.next_item(annotator)
    rows = latest_judgments(session.judgments)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["annotator"]] = counts.get(r["annotator"], 0) + 1
    inter = inter_annotator(rows)
    return {"annotator": annotator, "k": session.k, "total": len(session.items),
            "judged": len(session.judged_by(annotator)), "rating_scale": RATING_SCALE,
            "item": None if item is None else {"id": item["id"], "prompt": item["prompt"],
                                               "completions": item["completions"]},
            "annotators": [{"name": a, "judged": n} for a, n in sorted(counts.items())],
            "agreement": {"inter_annotator": None if inter["agreement"] != inter["agreement"] else inter["agreement"],
                          "pairs": inter["pairs"], "items": inter["items"]}}


def create_app(session: LabelSession, *, annotator: str, csrf_token: Optional[str] = None,
               access_token: Optional[str] = None, loopback_only: bool = True,
               max_body_bytes: int = DEFAULT_MAX_BODY_KB * 1024) -> Any:
    """The Starlette app for ``session``; ``annotator`` is the default id (the page's ``?annotator=`` overrides);
    request bodies over ``max_body_bytes`` are refused unread."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    csrf = csrf_token or secrets.token_urlsafe(32)
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    page = env.get_template("index.html")

    def error(status: int, message: str, field: Optional[str] = None) -> JSONResponse:
        return JSONResponse({"error": message, "field": field}, status_code=status)

    def who(request: Request, value: Any = None) -> str:
        name = value if value is not None else request.query_params.get("annotator", annotator)
        problem = annotator_problem(name)
        if problem:
            raise RequestError("annotator", f"{str(name)[:80]!r} {problem}")
        return name

    async def index(request: Request) -> Response:
        try:
            name = who(request)
        except RequestError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        html = page.render(csrf_token=csrf, annotator=name, total=len(session.items), folder=str(session.folder))
        return HTMLResponse(html)

    async def state(request: Request) -> Response:
        try:
            return JSONResponse(state_of(session, who(request)))
        except RequestError as exc:
            return error(400, str(exc), exc.field)

    async def judge(request: Request) -> Response:
        sent = request.headers.get("x-csrf-token", "")
        if not secrets.compare_digest(sent.encode(), csrf.encode()):
            return error(403, "missing or wrong CSRF token: reload the page (the server may have restarted)")
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(415, "send the judgment as application/json")
        body = await request.body()
        if len(body) > max_body_bytes:  # cannot happen behind the Content-Length check; kept as a second wall
            return refused(error(413, f"the request body is over {max_body_bytes} bytes"))
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested thousands deep
            return error(400, f"the body is not valid JSON ({type(exc).__name__}: {str(exc)[:120]}); send one "
                         "JSON object")
        try:
            check_fields(payload)
            name = who(request, payload.get("annotator", annotator))
            item = session.item(payload["item"])
            if item is None:
                raise RequestError("item", f"unknown comparison {payload['item']!r}; take the ids from /api/state")
            fields = validate_judgment(payload, len(item["completions"]))
        except RequestError as exc:
            return error(400, str(exc), exc.field)
        session.record(name, item["id"], fields)
        return JSONResponse({"saved": {"item": item["id"], "judgment": fields["judgment"]},
                             **state_of(session, name)})

    def secured(response: Response) -> Response:
        for k, v in HEADERS.items():
            response.headers[k] = v
        return response

    def refused(response: Response) -> Response:
        response.headers["Connection"] = "close"  # the body is left unread: end the connection, do not drain it
        return secured(response)

    class Guard(BaseHTTPMiddleware):
        """Host check (loopback binding), access token, body limit, origin of writes, and security headers on every
        response; all of them from the headers, before the body is read."""

        async def dispatch(self, request: Request, call_next: Callable) -> Response:
            if loopback_only and (request.url.hostname or "") not in LOOPBACK_NAMES:
                return refused(PlainTextResponse("this labeling server only answers requests to localhost",
                                                 status_code=403))
            if access_token:
                given = (request.cookies.get(COOKIE), request.query_params.get("token"),
                         request.headers.get("authorization", "").removeprefix("Bearer ").strip())
                if not any(g and secrets.compare_digest(g.encode(), access_token.encode()) for g in given):
                    return refused(PlainTextResponse(
                        "access token required: open the URL printed by `alignzoo label` (it ends in ?token=...)",
                        status_code=401))
                if request.query_params.get("token") and request.method == "GET" and request.url.path == "/":
                    # move the token from the URL into a cookie, so it does not stay in the address bar / history
                    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                    response: Response = RedirectResponse("/" + (f"?{query}" if query else ""), status_code=303)
                    response.set_cookie(COOKIE, access_token, httponly=True, samesite="strict")
                    return secured(response)
            too_big = body_problem(request.method, request.headers, max_body_bytes)
            if too_big:
                return refused(error(*too_big))
            foreign = origin_problem(request.method, request.headers)
            if foreign:
                return refused(error(403, foreign))
            return secured(await call_next(request))

    routes = [Route("/", index), Route("/api/state", state), Route("/api/judge", judge, methods=["POST"]),
              Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes, middleware=[Middleware(Guard)])
    app.state.csrf_token = csrf
    return app


def serve(session: LabelSession, *, host: str = "127.0.0.1", port: int = 8765, annotator: str = "annotator",
          access_token: Optional[str] = None, open_browser: bool = False,
          max_body_kb: int = DEFAULT_MAX_BODY_KB) -> None:
    """Serve the page until interrupted; prints the URL (with the real port when ``port`` is 0)."""
    import uvicorn

    weak = access_token is not None and token_problem(access_token)
    if weak:
        raise AlignzooError(f"--access-token {weak}")
    if not is_loopback(host) and not access_token:
        raise AlignzooError(f"--host {host} would let anyone on the network label and read the completions; give "
                            "--access-token TOKEN (or ALIGNZOO_LABEL_TOKEN) to serve beyond this machine")
    app = create_app(session, annotator=annotator, access_token=access_token, loopback_only=is_loopback(host),
                     max_body_bytes=max_body_kb * 1024)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AlignzooError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port (0: any free "
                            "port)") from None
    actual = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{actual}/?annotator={annotator}" + (f"&token={access_token}" if access_token else "")
    judged, total = len(session.judged_by(annotator)), len(session.items)
    print(f"alignzoo label: {url}", flush=True)
    print(f"alignzoo label: {judged}/{total} comparisons judged by {annotator}; saving to {session.labels_path} "
          "(Ctrl-C stops; run it again to resume)", file=sys.stderr, flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
