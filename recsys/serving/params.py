"""Each list endpoint's parameters, declared once: limits, patterns, defaults, descriptions.

From an ``Endpoint`` come both the FastAPI dependency the route takes (``Endpoint.read``:
its signature, hence the validation and the OpenAPI document) and the fast path's parser
(``Endpoint.parse``), which accepts only what the route would accept and otherwise says "not
mine" (None), leaving the request to the route. Both give a ``ListQuery``. A new parameter is
one ``Param`` here plus the line of the service that uses it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, NamedTuple

from fastapi import Path, Query
from pydantic import Field
from starlette.datastructures import QueryParams

from recsys.serving.finish import Options

__all__ = ["ID_PATTERN", "Param", "Endpoint", "ListQuery", "PRODUCT_ID", "CUSTOMER_ID",
           "ITEM_LIST", "SIMILAR", "BUNDLES", "UPSELL", "CART", "CUSTOMER_LIST", "POPULAR",
           "RECENT_SESSION", "RECENT_CUSTOMER", "TRENDING"]

ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # printable: no control characters
BOOLEAN = {"true": True, "1": True, "false": False, "0": False}  # the route takes more
Kind = Literal["int", "bool", "str", "choice", "strings"]
_BAD = object()  # a value the fast path leaves to the route


@dataclass(frozen=True)
class Param:
    """One query or path parameter: ``strings`` is a repeatable list of strings."""

    name: str
    kind: Kind
    default: Any = None
    description: str = ""
    where: Literal["query", "path"] = "query"
    ge: int | None = None
    le: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    choices: tuple[str, ...] = ()
    max_items: int | None = None
    examples: tuple[str, ...] = ()
    convert: Callable[[str], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "convert", self._converter())

    def _converter(self) -> Callable[[str], Any]:
        """``convert(raw)``: the value the route would take for ``raw``, or ``_BAD`` (unsure
        or invalid), built once per parameter so that a request pays one call."""
        if self.kind == "int":
            lo = self.ge if self.ge is not None else 0
            hi = self.le if self.le is not None else 10**9
            digits = len(str(hi))

            def integer(raw: str) -> Any:
                if len(raw) > digits or not raw.isdigit() or not raw.isascii():
                    return _BAD
                value = int(raw)
                return value if lo <= value <= hi else _BAD

            return integer
        if self.kind == "bool":
            return lambda raw: BOOLEAN.get(raw, _BAD)
        if self.kind == "choice":
            choices = frozenset(self.choices)
            return lambda raw: raw if raw in choices else _BAD
        shortest, longest = self.min_length or 0, self.max_length or 10**9
        # the pattern without its anchors, for fullmatch: Python's "$" also matches before a
        # final newline, pydantic's (Rust) regex does not
        body = self.pattern.removeprefix("^").removesuffix("$") if self.pattern else ".*"
        check = re.compile(body, re.DOTALL).fullmatch

        def string(raw: str) -> Any:
            return raw if shortest <= len(raw) <= longest and check(raw) else _BAD

        return string

    def with_default(self, default: Any) -> Param:
        return replace(self, default=default)

    def annotation(self) -> Any:
        """The type FastAPI validates and documents this parameter with."""
        if self.where == "path":
            return Annotated[str, Path(min_length=self.min_length, max_length=self.max_length,
                                       pattern=self.pattern, description=self.description,
                                       examples=list(self.examples))]
        if self.kind == "int":
            return Annotated[int, Query(ge=self.ge, le=self.le, description=self.description)]
        if self.kind == "bool":
            return Annotated[bool, Query(description=self.description)]
        if self.kind == "choice":
            return Annotated[Literal[self.choices], Query(description=self.description)]
        if self.kind == "strings":
            item = Annotated[str, Field(min_length=self.min_length, max_length=self.max_length,
                                        pattern=self.pattern)]
            return Annotated[list[item] | None,
                             Query(max_length=self.max_items, description=self.description)]
        return Annotated[str | None, Query(min_length=self.min_length,
                                           max_length=self.max_length, pattern=self.pattern,
                                           description=self.description)]


class ListQuery(NamedTuple):
    """A list request's parameters, as the route and the fast path both read them."""

    options: Options
    product_id: str | None = None
    customer_id: str | None = None
    session_id: str | None = None
    history: tuple[str, ...] = ()


class Endpoint:
    """The parameters of one endpoint, in the order the OpenAPI document lists them."""

    def __init__(self, *params: Param) -> None:
        self.params = params
        self.query = {p.name: p for p in params if p.where == "query"}
        self.path = tuple(p for p in params if p.where == "path")
        self.defaults = {p.name: p.default for p in params if p.where == "query"}
        self.lists = frozenset(p.name for p in params if p.kind == "strings")

        async def read(**values: Any) -> ListQuery:
            return self.query_of(values)

        read.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, annotation=p.annotation(),
                              default=inspect.Parameter.empty if p.where == "path" else
                              p.default) for p in params])
        self.read = read  # the route's dependency: Annotated[ListQuery, Depends(X.read)]

    def query_of(self, values: dict[str, Any]) -> ListQuery:
        """The ListQuery of validated values (every parameter of this endpoint present)."""
        get = values.get  # a parameter the endpoint lacks takes Options' own default
        options = Options(k=get("k", Options.k), category=get("category"),
                          exclude=frozenset(get("exclude") or ()),
                          in_stock_only=get("in_stock_only", Options.in_stock_only),
                          rank_by=get("rank_by", Options.rank_by))
        return ListQuery(options, get("product_id"), get("customer_id"), get("session_id"),
                         tuple(get("history") or ()))

    def parse(self, query_string: bytes, **path: str) -> ListQuery | None:
        """The request's parameters if the route would surely accept them, else None."""
        values = self.defaults.copy()
        for segment in self.path:
            if segment.convert(path[segment.name]) is _BAD:
                return None
            values[segment.name] = path[segment.name]
        seen = set()
        for key, raw in QueryParams(query_string).multi_items():
            param = self.query.get(key)
            if param is None:
                continue  # the route ignores unknown parameters too
            if key in self.lists:
                items = values[key] = values[key] or []
                if len(items) == param.max_items or param.convert(raw) is _BAD:
                    return None
                items.append(raw)
                continue
            value = param.convert(raw)
            if key in seen or value is _BAD:  # a repeated one: the route's rule decides
                return None
            seen.add(key)
            values[key] = value
        return self.query_of(values)


def _id(name: str, description: str, where: Literal["query", "path"] = "query",
        examples: tuple[str, ...] = ()) -> Param:
    return Param(name, "str", description=description, where=where, min_length=1,
                 max_length=128, pattern=ID_PATTERN, examples=examples)


PRODUCT_ID = _id("product_id", "product id", "path", ("P00180",))
CUSTOMER_ID = _id("customer_id", "customer id", "path", ("C000001",))
K = Param("k", "int", Options.k, "how many items (1..100)", ge=1, le=100)
CATEGORY = Param("category", "str", None, "only products in this category (any level of "
                 "a catalog path; one no product is in is a 422)",
                 min_length=1, max_length=256)
EXCLUDE = Param("exclude", "strings", None, "product ids to leave out", min_length=1,
                max_length=128, pattern=ID_PATTERN, max_items=100)
IN_STOCK = Param("in_stock_only", "bool", Options.in_stock_only,
                 "leave out out-of-stock and inactive products")
CUSTOMER = _id("customer_id", "the shopper (for the A/B test arm)")
SESSION = _id("session_id", "the shopper's session: its A/B test arm and, on item lists, "
              "its recent products (from the events posted)")
RANK_BY = Param("rank_by", "choice", Options.rank_by, "score, or expected order-value gain "
                "(score x price x margin)", choices=("score", "value"))
HISTORY = replace(EXCLUDE, name="history", description="products the shopper has interacted "
                  "with, most recent last (anonymous or new customers; on item and cart "
                  "lists it replaces the session's recent products)")

SESSION_ID = _id("session_id", "session id", "path", ("s-1",))
RECENT_SESSION = Endpoint(SESSION_ID, K, EXCLUDE, IN_STOCK)
RECENT_CUSTOMER = Endpoint(CUSTOMER_ID, K, EXCLUDE, IN_STOCK)
TRENDING = Endpoint(K, CATEGORY, EXCLUDE, IN_STOCK, CUSTOMER, SESSION)
ITEM_LIST = Endpoint(PRODUCT_ID, K, CATEGORY, EXCLUDE, IN_STOCK, CUSTOMER, SESSION, HISTORY)
SIMILAR = Endpoint(PRODUCT_ID, K, CATEGORY, EXCLUDE, IN_STOCK, CUSTOMER, SESSION)
BUNDLES = Endpoint(PRODUCT_ID, K.with_default(5), IN_STOCK, CUSTOMER, SESSION)
UPSELL = Endpoint(PRODUCT_ID, K.with_default(5), EXCLUDE, CUSTOMER, SESSION)  # in stock only
CART = Endpoint(K, CATEGORY, EXCLUDE, IN_STOCK, RANK_BY, HISTORY)
CUSTOMER_LIST = Endpoint(CUSTOMER_ID, K, CATEGORY, EXCLUDE, IN_STOCK, HISTORY, SESSION)
POPULAR = Endpoint(K, CATEGORY, EXCLUDE, IN_STOCK, CUSTOMER, SESSION)
