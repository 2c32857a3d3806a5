"""The merchandiser console, a router under ``/console`` of the API: server-rendered pages
(Jinja2, autoescaped) over the served artifact and the decisions store.

Every response carries the security headers (a CSP without scripts among them); every POST
must carry the session's CSRF token; viewers browse and export, editors also decide. A
decision goes to the store, which drops its cached snapshot, so this worker's API serves it
at once and the others within ``decisions_refresh_s``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlencode

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsys.console import review
from recsys.console.passwords import verify_password
from recsys.console.rules import (
    METRICS,
    PAGE_SIZE,
    STATUSES,
    RuleFilter,
    RulesCache,
    RulesTable,
    RuleStatuses,
)
from recsys.console.session import COOKIE, MAX_AGE_S, Session, SessionCodec, session_key
from recsys.console.throttle import SignInThrottle
from recsys.rules.export import GLOSSARY, export_csv, export_html, export_xlsx
from recsys.serving import recommend
from recsys.serving.index import ServingIndex
from recsys.serving.store import ServingStore

if TYPE_CHECKING:
    from recsys.serving.app import ServingState

__all__ = ["create_console", "PREFIX", "BULK_CAP", "SECURITY_HEADERS"]

log = logging.getLogger("recsys.console")

HERE = Path(__file__).parent
PREFIX = "/console"
BULK_CAP = 1000  # a bulk action decides at most this many rules, the first in the shown order
AUDIT_PAGE = 100
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # as the API: printable, no control characters
REASON = Field("", max_length=1024, pattern=r"^[^\x00]*$")  # PostgreSQL text cannot hold NUL

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
    """What the pages share: the serving state, the session codec, the rules cache."""

    def __init__(self, serving: ServingState) -> None:
        self.serving = serving
        self.codec = SessionCodec(session_key(serving.settings.api_key))
        self.secure_cookie = serving.settings.environment == "production"
        self.rules = RulesCache(serving.settings.artifacts)
        self.throttle = SignInThrottle()
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=True, undefined=StrictUndefined)
        self.templates.filters.update(when=_when, number=_number)

    @property
    def store(self) -> ServingStore:
        return self.serving.store

    async def respond(self, request: Request,
                      handler: Callable[[Request], Awaitable[Response]]) -> Response:
        """Run a console route: its session in, errors as pages, cookie and headers out."""
        session = self.codec.loads(request.cookies.get(COOKIE))
        fresh = session is None
        request.state.session = session = session or Session()
        request.state.console = self
        try:
            response = await handler(request)
        except SignInRequired:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = (_redirect(f"{PREFIX}/login?{urlencode({'next': target})}")
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


# -- dependencies -----------------------------------------------------------------------------


def get_console(request: Request) -> Console:
    console: Console = request.state.console
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


def get_session(request: Request) -> Session:
    session: Session = request.state.session
    return session


SessionDep = Annotated[Session, Depends(get_session)]


async def read_form(request: Request) -> FormData:
    return await request.form()


FormDep = Annotated[FormData, Depends(read_form)]


async def check_csrf(request: Request, session: SessionDep) -> None:
    """Every POST carries the session's CSRF token (a hidden field of every form)."""
    if request.method == "POST" and not session.csrf_matches(
            (await read_form(request)).get("csrf_token")):
        raise HTTPException(status_code=403, detail="The form's security token is missing or "
                                                    "out of date. Reload the page and try again.")


def signed_in(console: ConsoleDep, session: SessionDep) -> User:
    """The signed-in user, read from the database (so a removed user is signed out)."""
    row = console.store.user(session.username) if session.username else None
    if row is None:
        raise SignInRequired
    return User(row["username"], row["role"])


Viewer = Annotated[User, Depends(signed_in)]


def editor(user: Viewer) -> User:
    if not user.can_edit:
        raise HTTPException(status_code=403, detail=f"{user.name} is a viewer; only editors "
                                                    "can change decisions.")
    return user


Editor = Annotated[User, Depends(editor)]


def served_index(console: ConsoleDep) -> ServingIndex:
    index = console.serving.index
    if index is None:
        raise HTTPException(status_code=503, detail="No artifact version is loaded yet: "
                            f"{console.serving.error or 'publish one with recsys run'}.")
    return index


Index = Annotated[ServingIndex, Depends(served_index)]


def rules_table(console: ConsoleDep, index: Index) -> RulesTable:
    return console.rules.get(index)


Rules = Annotated[RulesTable, Depends(rules_table)]


# -- forms --------------------------------------------------------------------------------------


F = TypeVar("F", bound=BaseModel)


class _Form(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class LoginForm(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a password is taken as typed, spaces too

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    next: str = Field("", max_length=2048)


class RulesDecision(RuleFilter):
    """A decision on rules: the ticked ones, or every rule of the filter (up to BULK_CAP)."""

    action: Literal["approve", "reject"]
    scope: Literal["selected", "matching"] = "selected"
    key: list[Annotated[str, Field(min_length=4, max_length=1024)]] = Field(
        default_factory=list, max_length=PAGE_SIZE)
    reason: str = REASON

    @field_validator("reason", mode="after")
    @classmethod
    def _strip_reason(cls, value: str) -> str:
        return value.strip()


class ProductDecision(_Form):
    """Pin ``product`` at ``position`` for ``seed``; boost or bury it; or block it."""

    action: Literal["pin", "boost", "block"]
    seed: str = Field("", max_length=128)
    product: str = Field(min_length=1, max_length=128, pattern=ID_PATTERN)
    position: int | None = Field(None, ge=1, le=100)
    factor: float | None = Field(None, gt=0, le=100)
    reason: str = REASON
    next: str = Field("", max_length=2048)


class Undo(_Form):
    decision_id: int | None = Field(None, ge=1, le=2**31 - 1)
    batch_id: str = Field("", max_length=32, pattern=r"^[0-9a-f]*$")
    reason: str = REASON
    next: str = Field("", max_length=2048)


def _parse(model: type[F], form: FormData, **extra: Any) -> F:
    try:
        return model.model_validate({**dict(form), **extra})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise HTTPException(status_code=400, detail=f"Invalid form: {problems}") from None


# -- pages ---------------------------------------------------------------------------------------


def _safe_next(target: str, default: str) -> str:
    """A redirect target inside the console (never another site)."""
    ok = target.startswith(PREFIX + "/") and "//" not in target and "\\" not in target
    return target if ok else PREFIX + default


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def render(request: Request, template: str, *, status: int = 200,
           user: User | None = None, **context: Any) -> HTMLResponse:
    console: Console = request.state.console
    session: Session = request.state.session
    index = console.serving.index
    page = console.templates.get_template(template).render(
        base=PREFIX, csrf=session.csrf, flashes=session.take_flashes(), user=user,
        version=index.version if index else None, **context)
    return HTMLResponse(page, status_code=status)


def _statuses(console: Console, table: RulesTable) -> tuple[RuleStatuses, np.ndarray]:
    decided = RuleStatuses.from_decisions(console.store.list_decisions())
    return decided, table.statuses(decided)


def create_console(serving: ServingState) -> APIRouter:
    """The console's routes for one serving state: ``app.include_router(create_console(...))``."""
    console = Console(serving)

    class ConsoleRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def console_handler(request: Request) -> Response:
                return await console.respond(request, handler)

            return console_handler

    app = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False,
                    dependencies=[Depends(check_csrf)])

    @app.get("/static/console.css")
    def stylesheet() -> Response:
        return Response((HERE / "static" / "console.css").read_bytes(), media_type="text/css")

    # -- signing in -------------------------------------------------------------------------

    @app.get("")
    def home() -> RedirectResponse:
        return _redirect(f"{PREFIX}/rules")

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: Annotated[str, Query(max_length=2048)] = ""
                   ) -> HTMLResponse:
        return render(request, "login.html", next=next, failed=False)

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, session: SessionDep, form: FormDep) -> Response:
        data = _parse(LoginForm, form)
        address = request.client.host if request.client else "?"
        wait_s = console.throttle.wait_s(address, data.username)
        if wait_s:
            log.warning("console sign-in throttled for %r from %s", data.username, address)
            page = render(request, "login.html", status=429, next=data.next, failed=False,
                          wait_minutes=math.ceil(wait_s / 60))
            page.headers["Retry-After"] = str(wait_s)
            return page
        row = console.store.user(data.username)
        if not verify_password(row["password_hash"] if row else None, data.password):
            console.throttle.failed(address, data.username)
            log.warning("console sign-in refused for %r from %s", data.username, address)
            return render(request, "login.html", status=401, next=data.next, failed=True)
        console.throttle.succeeded(address, data.username)
        session.sign_in(data.username)
        log.info("console sign-in: %s (%s)", data.username, row["role"] if row else "?")
        return _redirect(_safe_next(data.next, "/rules"))

    @app.post("/logout")
    def logout(session: SessionDep) -> RedirectResponse:
        session.sign_out()
        session.flash("Signed out.")
        return _redirect(f"{PREFIX}/login")

    # -- rules ------------------------------------------------------------------------------

    @app.get("/rules", response_class=HTMLResponse)
    def rules_page(request: Request, user: Viewer, table: Rules,
                   rule_filter: Annotated[RuleFilter, Query()]) -> HTMLResponse:
        decided, statuses = _statuses(console, table)
        rows = table.select(rule_filter, statuses)
        pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
        page = min(rule_filter.page, pages)
        shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        counts = np.bincount(statuses, minlength=len(STATUSES))
        return render(request, "rules.html", user=user, f=rule_filter, total=len(rows),
                      all_rules=len(table), page=page, pages=pages,
                      rules=table.describe(shown, statuses, decided), metrics=METRICS,
                      statuses=STATUSES, status_counts=dict(zip(STATUSES, counts.tolist(),
                                                                strict=True)),
                      bulk_cap=BULK_CAP, glossary={g["metric"]: g["meaning"] for g in GLOSSARY})

    @app.post("/rules/decide")
    def decide_rules(user: Editor, table: Rules, session: SessionDep,
                     form: FormDep) -> RedirectResponse:
        data = _parse(RulesDecision, form, key=form.getlist("key"))
        back = f"{PREFIX}/rules?{data.query()}"
        if data.action == "reject" and not data.reason:
            session.flash("Not rejected: a rejection needs a reason.")
            return _redirect(back)
        decided, statuses = _statuses(console, table)
        if data.scope == "matching":
            matching = table.select(data, statuses)
            keys = table.keys[matching[:BULK_CAP]].tolist()
            if len(matching) > BULK_CAP:
                session.flash(f"Only the first {BULK_CAP:,} of the {len(matching):,} matching "
                              "rules (in the order shown) were considered.")
        else:
            keys = [k for k in data.key if k in table.row_of_key]
        status = "approved" if data.action == "approve" else "rejected"
        todo = [k for k in dict.fromkeys(keys)
                if decided.decided.get(k, ("new", None))[0] != status]
        kind = "approve_rule" if data.action == "approve" else "block_rule"
        console.store.add_decisions([{"kind": kind, "rule_key": k} for k in todo],
                                    by=user.name, reason=data.reason or None)
        session.flash(f"{status.capitalize()} {len(todo):,} rule{'s' * (len(todo) != 1)}"
                      + (f" ({len(keys) - len(todo):,} already {status})"
                         if len(keys) > len(todo) else "") + ".")
        return _redirect(back)

    def _export(table: RulesTable, rule_filter: RuleFilter, fmt: Literal["csv", "xlsx"]
                ) -> Response:
        _, statuses = _statuses(console, table)
        frame = table.export_frame(table.select(rule_filter, statuses), statuses)
        with tempfile.TemporaryDirectory(prefix="recsys-export-") as folder:
            path = Path(folder) / f"rules.{fmt}"
            if fmt == "csv":
                export_csv(frame, path)
            else:
                export_xlsx(frame, path, title=f"Rules of version {table.version}")
            body = path.read_bytes()
        media = "text/csv; charset=utf-8" if fmt == "csv" else (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        return Response(body, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="rules-{table.version}.{fmt}"'})

    @app.get("/rules/export.csv")
    def export_rules_csv(user: Viewer, table: Rules,
                         rule_filter: Annotated[RuleFilter, Query()]) -> Response:
        return _export(table, rule_filter, "csv")

    @app.get("/rules/export.xlsx")
    def export_rules_xlsx(user: Viewer, table: Rules,
                          rule_filter: Annotated[RuleFilter, Query()]) -> Response:
        return _export(table, rule_filter, "xlsx")

    @app.get("/rules/report.html", response_class=HTMLResponse)
    def rules_report(user: Viewer, table: Rules,
                     rule_filter: Annotated[RuleFilter, Query()]) -> HTMLResponse:
        """The HTML rules report (charts and glossary) of the filtered rules."""
        _, statuses = _statuses(console, table)
        frame = table.export_frame(table.select(rule_filter, statuses), statuses)
        shown = {k: v for k, v in rule_filter.fields().items() if k != "page"}
        with tempfile.TemporaryDirectory(prefix="recsys-report-") as folder:
            path = export_html(frame, Path(folder) / "rules.html",
                               title=f"Rules of version {table.version}",
                               summary={"artifact version": table.version,
                                        "filter": shown or "none"},
                               top=100, sort_by=rule_filter.sort)
            page = path.read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"Content-Security-Policy": REPORT_CSP})

    # -- products ---------------------------------------------------------------------------

    @app.get("/product", response_class=HTMLResponse)
    def product_page(request: Request, user: Viewer, index: Index, table: Rules,
                     product_id: Annotated[str, Query(alias="id", min_length=1,
                                                      max_length=128)],
                     pin: Annotated[str, Query(max_length=128)] = "") -> HTMLResponse:
        code = index.code_of.get(product_id)
        if code is None:
            raise HTTPException(status_code=404, detail=f"Product {product_id!r} is not in "
                                                        f"version {index.version}.")
        decided, statuses = _statuses(console, table)
        confidence = table.metrics["confidence"]

        def best(rows: np.ndarray, n: int) -> list[dict[str, Any]]:
            """The n most confident of these rules (ties in file order)."""
            return table.describe(rows[np.argsort(-confidence[rows], kind="stable")][:n],
                                  statuses, decided)

        decisions = console.store.decisions()
        options = recommend.Options(k=10)
        active = console.store.list_decisions()
        return render(
            request, "product.html", user=user, product=index.describe(product_id),
            available=product_id in index.available,
            rules_from=best(table.rows_with(product_id, "antecedent"), 50),
            rules_to=best(table.rows_with(product_id, "consequent"), 20),
            also_viewed=_neighbours(index, index.also_viewed, code),
            bundles=_bundles(index, code)[:20],
            api={"bought_together": recommend.bought_together(index, product_id, options,
                                                              decisions).items,
                 "also_viewed": recommend.also_viewed(index, product_id, options,
                                                      decisions).items,
                 "bundles": recommend.bundles_for(index, product_id, 5,
                                                  blocked=decisions.blocked_products)},
            decisions=[d for d in active if review.concerns(d, product_id)], pin=pin)

    @app.post("/product/decide")
    def decide_product(user: Editor, index: Index, session: SessionDep,
                       form: FormDep) -> RedirectResponse:
        data = _parse(ProductDecision, form)
        back = _safe_next(data.next, "/rules")
        unknown = [p for p in (data.product, data.seed) if p and p not in index.code_of]
        if unknown:
            session.flash(f"Nothing changed: {', '.join(unknown)} is not a product of "
                          f"version {index.version}.")
            return _redirect(back)
        if data.action == "pin":
            if not data.seed or data.position is None or data.seed == data.product:
                session.flash("Not pinned: a pin needs another product and a position.")
                return _redirect(back)
            decision: dict[str, Any] = {"kind": "pin", "seed_id": data.seed,
                                        "product_id": data.product, "position": data.position}
            done = f"Pinned {data.product} at position {data.position} for {data.seed}."
        elif data.action == "boost":
            if data.factor is None:
                session.flash("Not changed: boosting or burying needs a factor.")
                return _redirect(back)
            decision = {"kind": "boost", "product_id": data.product, "factor": data.factor}
            done = (f"{'Boosted' if data.factor >= 1 else 'Buried'} {data.product} "
                    f"(score x {data.factor:g}) everywhere.")
        else:
            decision = {"kind": "block_product", "product_id": data.product}
            done = f"Blocked {data.product} from every list."
        console.store.add_decisions([decision], by=user.name, reason=data.reason or None)
        session.flash(done)
        return _redirect(back)

    # -- undo, audit, flagged -------------------------------------------------------------------

    @app.post("/undo")
    def undo(user: Editor, session: SessionDep, form: FormDep) -> RedirectResponse:
        data = _parse(Undo, form)
        ids = console.store.batch_decisions(data.batch_id) if data.batch_id else (
            [data.decision_id] if data.decision_id else [])
        done = console.store.deactivate_decisions(ids, by=user.name, reason=data.reason or None)
        session.flash(f"Undone {len(done):,} decision{'s' * (len(done) != 1)}." if done else
                      "Nothing to undo: the decision is not active any more.")
        return _redirect(_safe_next(data.next, "/audit"))

    @app.get("/audit", response_class=HTMLResponse)
    def audit_page(request: Request, user: Viewer, index: Index, table: Rules,
                   page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> HTMLResponse:
        total = console.store.count_audit()
        pages = max(1, math.ceil(total / AUDIT_PAGE))
        entries = console.store.audit_log(limit=AUDIT_PAGE,
                                          offset=(min(page, pages) - 1) * AUDIT_PAGE)
        batch_sizes: dict[str, int] = {}
        for entry in entries:  # one page of the log
            entry["missing"] = review.missing_from(entry, index, table)
            batch_sizes[entry["batch_id"]] = batch_sizes.get(entry["batch_id"], 0) + 1
        return render(request, "audit.html", user=user, entries=entries, page=min(page, pages),
                      pages=pages, total=total, batch_sizes=batch_sizes)

    @app.get("/flagged", response_class=HTMLResponse)
    def flagged_page(request: Request, user: Viewer, index: Index, table: Rules
                     ) -> HTMLResponse:
        found = review.flagged(console.store.list_decisions(), index, table)
        return render(request, "flagged.html", user=user, flagged=found)

    return app


def _neighbours(index: ServingIndex, table: Any, code: int, n: int = 20
                ) -> list[dict[str, Any]]:
    """A product's precomputed neighbours with their evidence, before any business rule."""
    if table is None:
        return []
    ids, scores, support = (table.ids[code, :n].tolist(), table.scores[code, :n].tolist(),
                            table.support[code, :n].tolist())
    return [{"product_id": index.ids[i], "name": index.names.get(index.ids[i], ""),
             "similarity": s, "support": int(u)}
            for i, s, u in zip(ids, scores, support, strict=True) if i >= 0]


def _bundles(index: ServingIndex, code: int) -> list[dict[str, Any]]:
    """Every mined bundle holding the product, with its evidence, best gain first."""
    return [{"products": [index.describe(index.ids[c]) for c in bundle.products],
             "count": bundle.count, "expected_gain": bundle.expected_gain,
             "anchor": index.ids[bundle.anchor], "anchor_confidence": bundle.anchor_confidence}
            for bundle in sorted(index.bundles.get(code, []), key=lambda b: -b.expected_gain)]
