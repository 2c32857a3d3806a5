"""The console's dependencies, as ``Annotated`` aliases: the console, the session, the form,
the CSRF check, the signed-in user (``Viewer``) or editor (``Editor``), the served index and
its rules table."""

from __future__ import annotations

import hmac
from typing import Annotated

import numpy as np
from fastapi import Depends, HTTPException, Request
from starlette.datastructures import FormData

from recsys.console.rules import RuleBrowserTable, RuleStatuses
from recsys.console.session import Session
from recsys.console.site import Console, SignInRequired, User
from recsys.serving.index import ServingIndex

__all__ = ["ConsoleDep", "SessionDep", "FormDep", "check_csrf", "Viewer", "Editor", "Index",
           "Rules", "rule_statuses"]


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
    """The signed-in user, read from the database on every request: a removed or disabled
    user, or a session from before a sign-out or password reset, is signed out."""
    row = console.store.user(session.username) if session.username else None
    if (row is None or row["disabled"] or session.epoch is None
            or not hmac.compare_digest(str(row["session_epoch"]), session.epoch)):
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


def rules_table(console: ConsoleDep, index: Index) -> RuleBrowserTable:
    return console.rules.get(index)


Rules = Annotated[RuleBrowserTable, Depends(rules_table)]


def rule_statuses(console: Console, table: RuleBrowserTable) -> tuple[RuleStatuses, np.ndarray]:
    """The decisions on rules now, and each rule's status code (``STATUSES``)."""
    decided = RuleStatuses.from_decisions(console.store.list_decisions())
    return decided, table.statuses(decided)
