"""Signing in and out (throttled per address and user name)."""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from recsys.console.deps import ConsoleDep, FormDep, SessionDep
from recsys.console.forms import LoginForm, parse
from recsys.console.passwords import verify_password
from recsys.console.site import PREFIX, page_router, redirect, render, safe_next

__all__ = ["router"]

log = logging.getLogger("recsys.console")
router = page_router()


@router.get("")
def home() -> RedirectResponse:
    return redirect(f"{PREFIX}/rules")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: Annotated[str, Query(max_length=2048)] = ""
               ) -> HTMLResponse:
    return render(request, "login.html", next=next, failed=False, username="")


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, console: ConsoleDep, session: SessionDep,
          form: FormDep) -> Response:
    data = parse(LoginForm, form)
    address = request.client.host if request.client else "?"
    wait_s = console.throttle.wait_s(address, data.username)
    if wait_s:
        log.warning("console sign-in throttled for %r from %s", data.username, address)
        page = render(request, "login.html", status=429, next=data.next, failed=False,
                      username=data.username, wait_minutes=math.ceil(wait_s / 60))
        page.headers["Retry-After"] = str(wait_s)
        return page
    row = console.store.user(data.username)
    if not verify_password(row["password_hash"] if row else None, data.password) or (
            row is None or row["disabled"]):
        console.throttle.failed(address, data.username)
        log.warning("console sign-in refused for %r from %s", data.username, address)
        return render(request, "login.html", status=401, next=data.next, failed=True,
                      username=data.username)  # kept: only the password is typed again
    console.throttle.succeeded(address, data.username)
    session.sign_in(data.username, row["session_epoch"])
    log.info("console sign-in: %s (%s)", data.username, row["role"])
    return redirect(safe_next(data.next, "/rules"))


@router.post("/logout")
def logout(console: ConsoleDep, session: SessionDep) -> RedirectResponse:
    """Sign out: the user's sessions end everywhere (a copied cookie stops working too)."""
    if session.username:
        console.store.end_sessions(session.username)
    session.sign_out()
    session.flash("Signed out.")
    return redirect(f"{PREFIX}/login")
