"""What every console page shares: the per-app ``Console`` (session codec, rules cache,
sign-in throttle, templates), the route class that wraps each page (session in, errors as
pages, cookie and security headers out), and rendering.

Every response carries the security headers (a CSP without scripts among them); every POST
must carry the session's CSRF token (``deps.check_csrf``); viewers browse and export,
editors also decide.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.console.review import label, rule_label
from recsys.console.rules import RulesCache
from recsys.console.secret import session_secret
from recsys.console.session import COOKIE, MAX_AGE_S, Session, SessionCodec
from recsys.console.throttle import SignInThrottle
from recsys.errors import ConfigError
from recsys.serving.state import ServingState
from recsys.serving.store import ServingStore

__all__ = ["PREFIX", "SECURITY_HEADERS", "REPORT_CSP", "HERE", "Console", "User",
           "SignInRequired", "page_router", "render", "redirect", "safe_next"]

log = logging.getLogger("recsys.console")
HERE = Path(__file__).parent
PREFIX = "/console"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
# the rules report is one self-contained file: inline CSS and SVG, never a script
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
              "frame-ancestors 'none'; base-uri 'none'")


class SignInRequired(Exception):
    """Raised for a page that needs a signed-in user (answered with the sign-in page)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def can_edit(self) -> bool:
        return self.role == "editor"


class Console:
    """What the pages share: the serving state, the session codec, the rules cache. The
    composition root keeps one in ``app.state.console``."""

    def __init__(self, serving: ServingState) -> None:
        self.serving = serving
        self._codec: SessionCodec | None = None  # the secret is read at first use
        self.secure_cookie = serving.settings.environment == "production"
        self.rules = RulesCache(serving.settings.artifacts)
        self.throttle = SignInThrottle()
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=True, undefined=StrictUndefined)
        self.templates.filters.update(when=_when, number=_number, evidence=_evidence)

    @property
    def codec(self) -> SessionCodec:
        """The session codec, keyed with the session secret (generated at first use)."""
        if self._codec is None:
            self._codec = SessionCodec(session_secret(self.serving.settings))
        return self._codec

    @property
    def store(self) -> ServingStore:
        return self.serving.store

    async def respond(self, request: Request,
                      handler: Callable[[Request], Awaitable[Response]]) -> Response:
        """Run a console route: its session in, errors as pages, cookie and headers out."""
        try:
            codec = self.codec
        except ConfigError as exc:  # no session secret: no sessions (the log says why)
            log.error("console unavailable: %s", exc)
            return HTMLResponse("The console is unavailable: it has no session secret; the "
                                "server log says why.", status_code=503,
                                headers=SECURITY_HEADERS)
        session = codec.loads(request.cookies.get(COOKIE))
        fresh = session is None
        request.state.session = session = session or Session()
        request.state.console = self
        try:
            response = await handler(request)
        except SignInRequired:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = (redirect(f"{PREFIX}/login?{urlencode({'next': target})}")
                        if request.method == "GET" else
                        render(request, "error.html", status=401, message="Sign in first."))
        except StarletteHTTPException as exc:
            response = render(request, "error.html", status=exc.status_code,
                              message=exc.detail)
        except RequestValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: "
                                 f"{e.get('msg')}" for e in exc.errors())
            response = render(request, "error.html", status=400,
                              message=f"Invalid input: {problems}")
        if fresh or session.changed:
            response.set_cookie(COOKIE, self.codec.dumps(session), max_age=MAX_AGE_S,
                                path=PREFIX, httponly=True, samesite="lax",
                                secure=self.secure_cookie)
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
        return response


class ConsoleRoute(APIRoute):
    """A console page: run by the app's ``Console`` (see ``Console.respond``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            console: Console = request.app.state.console
            return await console.respond(request, handler)

        return console_handler


def page_router() -> APIRouter:
    """A router for console pages, under PREFIX."""
    return APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


def _when(value: datetime) -> str:
    """A stored time in UTC (SQLite gives it back without its zone)."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: float, metric: str = "") -> str:
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if metric in ("count", "antecedent_count", "consequent_count"):
        return f"{int(value):,}"
    if metric in ("support", "confidence"):
        return f"{value:.2%}"
    if metric == "fisher_p":
        return f"{value:.2e}"
    return f"{value:.3f}"


def _evidence(value: Any, key: str) -> str:
    """One evidence value of an API reason, formatted as the rules tables format the same
    metric (confidence as a percentage, counts as integers, lift and scores to 3 places)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return _number(value, "count")
    if isinstance(value, float):
        return _number(value, "confidence" if key.endswith("confidence") else key)
    if isinstance(value, list):
        return " + ".join(str(v) for v in value)
    return str(value)


def safe_next(target: str, default: str) -> str:
    """A redirect target inside the console (never another site)."""
    ok = target.startswith(PREFIX + "/") and "//" not in target and "\\" not in target
    return target if ok else PREFIX + default


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def render(request: Request, template: str, *, status: int = 200,
           user: User | None = None, **context: Any) -> HTMLResponse:
    console: Console = request.state.console
    session: Session = request.state.session
    index = console.serving.index
    page = console.templates.get_template(template).render(
        base=PREFIX, csrf=session.csrf, flashes=session.take_flashes(), user=user,
        version=index.version if index else None, named=lambda pid: label(index, pid),
        named_rule=lambda key: rule_label(index, key), **context)
    return HTMLResponse(page, status_code=status)
