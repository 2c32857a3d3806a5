"""The merchandiser console over a published demo artifact, on SQLite and on PostgreSQL.

One demo shop (seed 5) with a script tag in one product's name is run through the pipeline
once; the console is checked against brute force on that version's rules.parquet and against
what the API answers after each decision (the shop's decisions_refresh_s is 60 s, so an
immediate change proves the console's writes reach the API at once).
"""

from __future__ import annotations

import html
import io
import re
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from recsys.app import create_app
from recsys.artifacts import ArtifactStore
from recsys.cli import main
from recsys.config import ServingSettings, load_config
from recsys.console import site
from recsys.console.pages import rules as rule_pages
from recsys.console.passwords import hash_password, verify_password
from recsys.console.rules import RuleBrowserQuery
from recsys.console.session import COOKIE
from recsys.demo import DemoSpec, PlantedTruth, generate_demo
from recsys.pipeline import run_pipeline
from recsys.serving.store import ServingStore
from tests.conftest import write_small_config
from tests.test_api import write_demo_config
from tests.test_console_rules import Rules, brute_select

API_KEY = "console-admin-key-1"
ADMIN = {"X-API-Key": API_KEY}
EVIL = '<script>alert(1)</script> "Mug" & <b>Co</b>'
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
USERS = {"edna": ("editor", "edna-password-1"), "vic": ("viewer", "vic-password-1")}


# -- the shop, the database, the app ---------------------------------------------------------------


@dataclass
class ConsoleShop:
    config: Path
    settings: ServingSettings
    planted: PlantedTruth
    evil: str  # the product whose name is a script tag
    rules: Rules  # the served version's rules.parquet with the catalog's names, for brute force


@pytest.fixture(scope="session")
def console_shop(tmp_path_factory: pytest.TempPathFactory) -> ConsoleShop:
    # not the shared demo shop: a name carrying markup and the full rule set (no thresholds)
    tmp = tmp_path_factory.mktemp("console")
    shop = tmp / "shop"
    generate_demo(shop, DemoSpec(orders=2000, products=100, seed=5), progress=False)
    orders = pd.read_csv(shop / "orders.csv", dtype=str, keep_default_na=False)
    evil = str(orders["product_id"].value_counts().index[0])  # in many rules
    catalog = pd.read_csv(shop / "catalog.csv", dtype=str, keep_default_na=False)
    catalog.loc[catalog["product_id"] == evil, "name"] = EVIL
    catalog.to_csv(shop / "catalog.csv", index=False)
    config = write_demo_config(tmp, shop, api_key=API_KEY, decisions_refresh_s=60)
    with config.open("a") as f:  # the full rule set of this small shop: many rules to browse
        f.write("[rules]\nmin_support = 0.001\nmin_count = 0\nmin_lift = 1.0\n"
                "max_p_value = 1\nprune_redundant = false\nmax_per_antecedent = 0\n")
    run_pipeline(load_config(config), show_progress=False)
    folder = ArtifactStore(tmp / "artifacts").path()
    served = pd.read_parquet(folder / "catalog.parquet")
    names = dict(zip(served["product_id"], served["name"], strict=True))
    categories = dict(zip(served["product_id"], served["category"], strict=True))
    assert names[evil] == EVIL
    return ConsoleShop(config, load_config(config).serving_settings(),
                       PlantedTruth.load(shop / "planted.json"), evil,
                       Rules(pd.read_parquet(folder / "rules.parquet"), names, categories))


@contextmanager
def fresh_database(kind: str, folder: Path, postgres_url: str | None) -> Iterator[str]:
    """An empty database: a SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / f'console-{uuid.uuid4().hex[:8]}.db'}"
        return
    assert postgres_url is not None
    schema = f"recsys_console_{uuid.uuid4().hex[:10]}"
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{postgres_url}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


def _postgres(request: pytest.FixtureRequest, kind: str) -> str | None:
    return str(request.getfixturevalue("postgres_url")) if kind == "postgresql" else None


@cache
def password_hash(name: str) -> str:
    return hash_password(USERS[name][1])


def add_users(store: ServingStore) -> None:
    for name, (role, _) in USERS.items():
        store.add_user(name, password_hash(name), role)


def csrf(client: TestClient) -> str:
    """The CSRF token of the client's session (the cookie is signed, not encrypted)."""
    codec = client.app.state.console.codec  # type: ignore[attr-defined]
    session = codec.loads(client.cookies.get(COOKIE))
    assert session is not None
    return session.csrf


def sign_in(app: FastAPI, name: str, password: str | None = None) -> TestClient:
    client = TestClient(app)
    client.get("/console/login")
    response = client.post("/console/login", follow_redirects=False, data={
        "username": name, "password": password or USERS[name][1], "csrf_token": csrf(client)})
    assert response.status_code == 303, response.text
    return client


def post(client: TestClient, path: str, **data: Any) -> Any:
    """A form POST with the session's CSRF token; redirects are not followed."""
    return client.post(path, data={"csrf_token": csrf(client), **data}, follow_redirects=False)


@dataclass
class Served:
    app: FastAPI
    api: TestClient  # what a storefront sees
    editor: TestClient
    viewer: TestClient

    @property
    def store(self) -> ServingStore:
        store: ServingStore = self.app.state.serving.store
        return store


@pytest.fixture(scope="module", params=DATABASES)
def served(request: pytest.FixtureRequest, console_shop: ConsoleShop,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with fresh_database(request.param, tmp_path_factory.mktemp("db"),
                        _postgres(request, request.param)) as url:
        app = create_app(console_shop.settings.model_copy(update={"database_url": url}))
        with TestClient(app) as api:
            add_users(app.state.serving.store)
            yield Served(app, api, sign_in(app, "edna"), sign_in(app, "vic"))


@pytest.fixture(autouse=True)
def undo_everything(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with no decision in force."""
    yield
    if "served" in request.fixturenames:
        store = request.getfixturevalue("served").store
        store.deactivate_decisions([d["id"] for d in store.list_decisions()], by="cleanup",
                                   reason=None)


# -- reading pages ---------------------------------------------------------------------------------


def page(client: TestClient, path: str, **params: Any) -> str:
    response = client.get(path, params=params, follow_redirects=False)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def shown_rules(text_: str) -> list[tuple[str, str]]:
    """(rule key, status) of each rule row of a page."""
    return [(html.unescape(key), status) for status, key in re.findall(
        r'<tr class="rule status-(\w+)" data-key="([^"]+)"', text_)]


def flashes(text_: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<p class="flash" role="status">([^<]*)</p>',
                                                 text_)]


def api_list(client: TestClient, seed: str, k: int = 10) -> dict[str, Any]:
    response = client.get(f"/v1/items/{seed}/bought-together", params={"k": k})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [item["product_id"] for item in body["items"]]


def rule_items(body: dict[str, Any]) -> dict[str, str]:
    """Rule key -> product of the items a rule put in the list."""
    return {item["reason"]["evidence"]["rule"]: item["product_id"] for item in body["items"]
            if item["reason"]["source"] == "rule"}


# -- signing in, roles, CSRF, headers ----------------------------------------------------------------


def test_pages_need_a_signed_in_user(served: Served) -> None:
    anonymous = TestClient(served.app)
    for path in ("/console/rules?q=mug", "/console/audit", "/console/flagged",
                 "/console/product?id=P00001", "/console/rules/export.csv"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        location = urlsplit(response.headers["location"])
        assert location.path == "/console/login"
        assert parse_qs(location.query)["next"] == [path]
    response = post(anonymous, "/console/rules/decide", action="approve", scope="matching")
    assert response.status_code == 401
    assert served.store.list_decisions() == []


def test_sign_in_and_out(served: Served) -> None:
    client = TestClient(served.app)
    login = page(client, "/console/login", next="/console/audit")
    before = csrf(client)
    assert f'name="csrf_token" value="{before}"' in login
    response = client.post("/console/login", follow_redirects=False, data={
        "username": "edna", "password": USERS["edna"][1], "csrf_token": before,
        "next": "/console/audit"})
    assert response.status_code == 303 and response.headers["location"] == "/console/audit"
    assert csrf(client) != before  # a new token with every sign-in
    assert "edna · editor" in page(client, "/console/audit")
    assert post(client, "/console/logout").headers["location"] == "/console/login"
    assert client.get("/console/rules", follow_redirects=False).status_code == 303
    # signing out ends every session of the user: the module's editor signs in again
    assert served.editor.get("/console/rules", follow_redirects=False).status_code == 303
    served.editor = sign_in(served.app, "edna")
    # a redirect after sign-in never leaves the console
    for target in ("https://evil.example/", "//evil.example/console/", "/v1/popular"):
        client.get("/console/login")
        response = client.post("/console/login", follow_redirects=False, data={
            "username": "vic", "password": USERS["vic"][1], "csrf_token": csrf(client),
            "next": target})
        assert response.headers["location"] == "/console/rules", target


def test_wrong_password_does_not_tell_whether_the_user_exists(served: Served) -> None:
    answers = []
    for name, password in (("edna", "not-her-password"), ("nobody", "any-password-at-all")):
        client = TestClient(served.app)
        client.get("/console/login")
        token = csrf(client)
        response = client.post("/console/login", follow_redirects=False, data={
            "username": name, "password": password, "csrf_token": token})
        assert response.status_code == 401
        assert "Wrong user name or password." in response.text
        # the user name is kept (issue #16), so only the password is typed again
        assert re.search(rf'name="username"[^>]*value="{name}"', response.text)
        assert re.search(r'type="password"[^>]*autofocus', response.text)
        answers.append(response.text.replace(token, "TOKEN").replace(name, "NAME"))
        assert client.get("/console/rules", follow_redirects=False).status_code == 303
    assert answers[0] == answers[1]


def test_every_post_needs_the_session_csrf_token(served: Served) -> None:
    editor = served.editor
    form = {"action": "approve", "scope": "matching"}
    assert editor.post("/console/rules/decide", data=form).status_code == 403
    assert editor.post("/console/rules/decide",
                       data={**form, "csrf_token": "forged"}).status_code == 403
    other = csrf(served.viewer)  # a real token, of another session
    response = editor.post("/console/rules/decide", data={**form, "csrf_token": other})
    assert response.status_code == 403 and "security token" in response.text
    for path, data in (("/console/product/decide", {"action": "block", "product": "P00001"}),
                       ("/console/undo", {"decision_id": "1"}), ("/console/logout", {})):
        assert editor.post(path, data=data).status_code == 403, path
    anonymous = TestClient(served.app)
    assert anonymous.post("/console/login", data={
        "username": "edna", "password": USERS["edna"][1]}).status_code == 403
    assert served.store.list_decisions() == []
    assert "edna · editor" in page(editor, "/console/rules")  # still signed in


def test_viewers_browse_and_export_but_cannot_decide(served: Served,
                                                     console_shop: ConsoleShop) -> None:
    viewer = served.viewer
    rules = page(viewer, "/console/rules")
    assert "vic · viewer" in rules and shown_rules(rules)
    assert 'name="key"' not in rules and 'name="action"' not in rules
    assert viewer.get("/console/rules/export.csv").status_code == 200
    seed = console_shop.planted.complements[0][0]
    assert 'id="pin-form"' not in page(viewer, "/console/product", id=seed)
    for path, data in (
            ("/console/rules/decide", {"action": "approve", "scope": "matching"}),
            ("/console/product/decide", {"action": "block", "product": seed}),
            ("/console/undo", {"decision_id": "1"})):
        response = post(viewer, path, **data)
        assert response.status_code == 403, path
        assert "only editors" in response.text
    assert served.store.list_decisions() == []


def test_security_headers_and_cookie_flags(served: Served, console_shop: ConsoleShop,
                                           tmp_path: Path) -> None:
    editor = served.editor
    responses = [TestClient(served.app).get("/console/login"), editor.get("/console/rules"),
                 editor.get("/console/static/console.css"),
                 editor.get("/console/product", params={"id": "no-such-product"}),
                 editor.get("/console/rules/export.csv")]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 200]
    for response in responses:
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp  # no script may run
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    report = editor.get("/console/rules/report.html")
    assert report.headers["content-security-policy"] == site.REPORT_CSP
    cookie = responses[0].headers["set-cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie
    production = ServingSettings(environment="production", api_key="a-production-key",
                                 artifacts=str(tmp_path / "none"),
                                 database_url=f"sqlite:///{tmp_path / 'p.db'}")
    cookie = TestClient(create_app(production)).get("/console/login").headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_malicious_product_name_is_shown_as_text(served: Served,
                                                   console_shop: ConsoleShop) -> None:
    evil, editor = console_shop.evil, served.editor
    post(editor, "/console/product/decide", action="block", product=evil, reason=EVIL)
    # a product whose page names the evil one (a rule recommends it from the evil one)
    partner = next(key.split("->")[1] for key in console_shop.rules.keys
                   if key.startswith(f"{evil}->"))
    pages = [page(editor, "/console/rules", q=evil), page(editor, "/console/product", id=evil),
             page(editor, "/console/product", id=partner), page(editor, "/console/audit"),
             page(editor, "/console/rules/report.html", q=evil)]
    for text_ in pages:
        assert ESCAPED in text_
        assert "<script" not in text_.lower()


# -- the rules browser ----------------------------------------------------------------------------------


FILTERS = [
    {},
    {"q": "mug"},
    {"q": "GREY", "sort": "confidence", "order": "asc"},
    {"category": "Home > Kitchen", "min_lift": "2", "page": "2"},
    {"min_support": "0.003", "min_confidence": "0.1", "sort": "count"},
    {"min_lift": "1.5", "sort": "fisher_p", "page": "3"},
    {"q": "no such product"},
]


@pytest.mark.parametrize("fields", FILTERS, ids=lambda f: "&".join(f"{k}={v}" for k, v in
                                                                    f.items()) or "all")
def test_rules_browser_matches_brute_force(served: Served, console_shop: ConsoleShop,
                                           fields: dict[str, str]) -> None:
    f = RuleBrowserQuery.model_validate(fields)
    expected = brute_select(console_shop.rules, f)
    text_ = page(served.viewer, "/console/rules", **fields)
    first = (f.page - 1) * rule_pages.PAGE_SIZE
    assert [key for key, _ in shown_rules(text_)] == expected[first: first + rule_pages.PAGE_SIZE]
    total = len(console_shop.rules.frame)
    assert f"Rules <small>{len(expected):,} of {total:,}</small>" in text_
    if fields.get("q") == "no such product":
        assert "No rule matches this filter." in text_


def test_pages_past_the_end_show_the_last_page(served: Served, console_shop: ConsoleShop
                                               ) -> None:
    expected = brute_select(console_shop.rules, RuleBrowserQuery(q="mug"))
    last = -(-len(expected) // rule_pages.PAGE_SIZE)
    text_ = page(served.viewer, "/console/rules", q="mug", page=last + 5)
    assert [k for k, _ in shown_rules(text_)] == expected[(last - 1) * rule_pages.PAGE_SIZE:]
    assert f"page {last} of {last}" in text_


def xlsx_rows(content: bytes) -> list[list[str]]:
    """The text of every cell of the first sheet, row by row (numbers as written)."""
    ns = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        strings = ["".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t")) for si in
                   ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", ns)]
        sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
    rows = []
    for row in sheet.iter(f"{{{ns['m']}}}row"):
        cells = []
        for cell in row.findall("m:c", ns):
            value = cell.findtext("m:v", default="", namespaces=ns)
            cells.append(strings[int(value)] if cell.get("t") == "s" else value)
        rows.append(cells)
    return rows


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_export_is_the_filtered_view(served: Served, console_shop: ConsoleShop,
                                     fmt: str) -> None:
    fields = {"q": console_shop.evil, "min_lift": "1.2", "sort": "confidence", "page": "2"}
    expected = brute_select(console_shop.rules, RuleBrowserQuery.model_validate(fields))
    post(served.editor, "/console/rules/decide", action="approve", key=expected[0], reason="ok")
    response = served.viewer.get(f"/console/rules/export.{fmt}", params=fields)
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    if fmt == "csv":
        table = pd.read_csv(io.BytesIO(response.content), keep_default_na=False)
        header, keys, statuses = list(table.columns), table["rule_key"].tolist(), table[
            "status"].tolist()
        names = set(table["antecedent_names"]) | set(table["consequent_names"])
    else:
        header, *rows = xlsx_rows(response.content)
        keys = [row[header.index("rule_key")] for row in rows]
        statuses = [row[header.index("status")] for row in rows]
        names = {row[header.index(c)] for row in rows
                 for c in ("antecedent_names", "consequent_names")}
    assert keys == expected  # every page of the view, in its order
    assert statuses == ["approved"] + ["new"] * (len(expected) - 1)
    assert any(EVIL in name for name in names)  # data, not HTML: kept as it is
    assert {"support", "confidence", "lift", "count"} <= set(header)


def test_rules_report_is_linked_and_filtered(served: Served, console_shop: ConsoleShop) -> None:
    rules = page(served.viewer, "/console/rules", q="mug", min_lift="2")
    assert 'href="/console/rules/report.html?q=mug&amp;min_lift=2.0"' in rules
    report = page(served.viewer, "/console/rules/report.html", q="mug", min_lift="2")
    expected = brute_select(console_shop.rules, RuleBrowserQuery(q="mug", min_lift=2))
    assert f"Rules in this export</dt><dd>{len(expected):,}</dd>" in report
    assert report.count('<tr class="rule">') == min(100, len(expected))


def test_product_page_shows_the_evidence_beside_what_the_api_returns(
        served: Served, console_shop: ConsoleShop) -> None:
    index = served.app.state.serving.index
    seed = next(p for p in index.ids if index.bundles.get(index.code_of[p]))
    text_ = page(served.viewer, "/console/product", id=seed)
    rules = console_shop.rules.frame.assign(key=console_shop.rules.keys)
    by_confidence = rules.sort_values("confidence", ascending=False, kind="stable")
    sides = {side: by_confidence[by_confidence[side].map(lambda ps: seed in list(ps))]
             for side in ("antecedents", "consequents")}
    # one row per consequent (its most confident rule), issue #16
    first_per_consequent = sides["antecedents"][:500].assign(
        then=sides["antecedents"]["consequents"][:500].map(tuple)).drop_duplicates("then")
    expected = (first_per_consequent["key"].tolist()[:50] +
                sides["consequents"]["key"].tolist()[:20])
    assert [key for key, _ in shown_rules(text_)] == expected
    for name, path in (("bought-together", "bought-together"), ("also-viewed", "also-viewed")):
        shown = re.search(rf'<ol class="api" id="api-{name}">(.*?)</ol>', text_, re.S)
        assert shown is not None
        api = served.api.get(f"/v1/items/{seed}/{path}", params={"k": 10}).json()
        assert re.findall(r'data-product="([^"]+)"', shown.group(1)) == ids(api)
    bundles = served.api.get(f"/v1/items/{seed}/bundles", params={"k": 5}).json()["bundles"]
    shown_bundles = re.search(r'<ol class="api" id="api-bundles">(.*?)</ol>', text_, re.S)
    assert shown_bundles is not None and shown_bundles.group(1).count("<li>") == len(bundles)
    assert len(bundles) > 0
    neighbours = index.also_viewed.ids[index.code_of[seed], :20]
    for code in neighbours[neighbours >= 0][:5].tolist():  # the evidence: similarity, sessions
        assert f"?id={index.ids[code]}" in text_


def test_product_page_shows_whole_rules_once_per_consequent(
        served: Served, console_shop: ConsoleShop) -> None:
    rules = console_shop.rules.frame.assign(key=console_shop.rules.keys)
    long = rules[rules["antecedents"].map(len) > 1]
    assert len(long), "the demo mines rules with two antecedents"
    # the product with the most rules whose consequent repeats (85123A -> 21212 in the issue)
    seed = long["antecedents"].explode().value_counts().index[0]
    text_ = page(served.viewer, "/console/product", id=seed)
    table = text_.split("<h3>Rules that recommend this product</h3>")[0]
    rows = re.findall(r'<tr class="rule status-\w+" data-key="([^"]+)">\s*<td>(.*?)</td>\s*'
                      r'<td>(.*?)</td>', table, re.S)
    consequents = [re.findall(r"\?id=([^\"&]+)", then) for _, _, then in rows]
    assert len(consequents) == len({tuple(c) for c in consequents})  # each listed once
    mine = rules[rules["antecedents"].map(lambda ps: seed in list(ps))]
    assert len(mine) > len(rows)  # some were grouped
    for key, when, _ in rows:  # the if-side holds the whole antecedent, this product too
        antecedents = html.unescape(key).split("->")[0].split("+")
        if_side = when.split("<details")[0]
        assert re.findall(r"\?id=([^\"&]+)", if_side) == antecedents
    grouped = re.findall(r'<li data-key="([^"]+)"', table)
    shown = [html.unescape(k) for k, _, _ in rows] + [html.unescape(k) for k in grouped]
    top = mine.sort_values("confidence", ascending=False, kind="stable")[:500]
    wanted = set(top[top["consequents"].map(tuple).isin(
        {tuple(c) for c in consequents})]["key"])
    assert sorted(shown) == sorted(wanted)


def test_evidence_is_formatted_alike_in_rules_and_api_lists(
        served: Served, console_shop: ConsoleShop) -> None:
    seed = console_shop.planted.complements[0][0]
    text_ = page(served.viewer, "/console/product", id=seed)
    api = re.search(r'<ol class="api" id="api-bought-together">(.*?)</ol>', text_, re.S)
    assert api is not None
    reasons = re.findall(r'<span class="reason">(.*?)</span>', api.group(1), re.S)
    assert any("lift" in r for r in reasons)
    for reason in reasons:  # confidence as 12.34%, lift to 3 places, no snake_case
        assert re.search(r"confidence \d+\.\d\d%", reason) or "confidence" not in reason
        assert not re.search(r"lift \d+\.\d{4,}", reason) and "_" not in reason, reason
    rows = re.findall(r'<td class="num">([^<]*)</td><td class="num">([^<]*)</td>', text_)
    assert rows and all(re.fullmatch(r"\d+\.\d\d%", c) for c, _ in rows[:3])


# -- decisions reach the API -----------------------------------------------------------------------


def test_reject_a_rule_removes_it_from_the_api_and_undo_restores_it(
        served: Served, console_shop: ConsoleShop) -> None:
    seed, partner = console_shop.planted.complements[2]
    key = f"{seed}->{partner}"
    assert rule_items(api_list(served.api, seed)).get(key) == partner
    response = post(served.editor, "/console/rules/decide", action="reject", key=key,
                    q=seed)
    assert response.headers["location"] == f"/console/rules?q={seed}"
    assert "a rejection needs a reason" in " ".join(flashes(page(served.editor,
                                                                 "/console/rules", q=seed)))
    assert served.store.list_decisions() == []
    post(served.editor, "/console/rules/decide", action="reject", key=key, q=seed,
         reason="  not a real complement ")
    assert flashes(page(served.editor, "/console/rules", q=seed)) == ["Rejected 1 rule."]
    body = api_list(served.api, seed)
    assert key not in rule_items(body) and "blocked_rule:1" in body["applied"]
    [decision] = served.store.list_decisions()
    assert (decision["kind"], decision["rule_key"], decision["created_by"],
            decision["reason"]) == ("block_rule", key, "edna", "not a real complement")
    rejected = page(served.editor, "/console/rules", status="rejected")
    assert shown_rules(rejected) == [(key, "rejected")]
    assert "by edna: not a real complement" in rejected
    post(served.editor, "/console/undo", decision_id=decision["id"], next="/console/rules")
    assert rule_items(api_list(served.api, seed)).get(key) == partner
    assert served.store.list_decisions() == []


def test_pin_puts_the_product_at_its_position(served: Served, console_shop: ConsoleShop) -> None:
    seed = console_shop.planted.complements[3][0]
    before = ids(api_list(served.api, seed, k=5))
    popular = served.api.get("/v1/popular", params={"k": 30}).json()
    pinned = next(p for p in ids(popular) if p not in before and p != seed)
    here = f"/console/product?id={seed}"
    response = post(served.editor, "/console/product/decide", action="pin", seed=seed,
                    product=pinned, position="2", reason="promotion", next=here)
    assert response.headers["location"] == here
    body = api_list(served.api, seed, k=5)
    assert ids(body)[1] == pinned and ids(body)[0] == before[0]
    assert body["items"][1]["reason"] == {"source": "pinned",
                                          "evidence": {"seed": seed, "position": 2}}
    product = page(served.editor, "/console/product", id=seed)
    shown = re.search(r'<ol class="api" id="api-bought-together">(.*?)</ol>', product, re.S)
    assert shown is not None
    assert re.findall(r'data-product="([^"]+)"', shown.group(1))[:2] == [before[0], pinned]
    names = served.app.state.serving.index.names  # names where known (issue #16)
    pin = f"{names[pinned]} ({pinned}) at position 2 for {names[seed]} ({seed})"
    assert f"Pinned {pin}." in html.unescape(product)  # the confirmation
    assert f"pin {pin}" in html.unescape(product)  # the decisions in force
    post(served.editor, "/console/product/decide", action="pin", seed=seed, product=pinned,
         position="4", next=here)
    assert ids(api_list(served.api, seed, k=5))[3] == pinned  # the latest pin wins
    # refused: a product not in the version, a pin without a position, a bad position
    for form in ({"product": "NO-SUCH-PRODUCT", "position": "1"}, {"product": pinned},
                 {"product": seed, "position": "1"}):
        post(served.editor, "/console/product/decide", action="pin", seed=seed, next=here,
             **form)
    assert post(served.editor, "/console/product/decide", action="pin", seed=seed,
                product=pinned, position="0").status_code == 400
    assert len(served.store.list_decisions()) == 2


def test_boost_bury_and_block_everywhere(served: Served, console_shop: ConsoleShop) -> None:
    def popular(k: int) -> list[str]:
        return ids(served.api.get("/v1/popular", params={"k": k}).json())

    before = popular(10)
    decide = "/console/product/decide"
    post(served.editor, decide, action="boost", product=before[6], factor="50")
    post(served.editor, decide, action="boost", product=before[0], factor="0.01")
    after = popular(10)
    assert after[0] == before[6] and before[0] not in after
    blocked = after[0]
    post(served.editor, decide, action="block", product=blocked, reason="recalled")
    assert blocked not in popular(50)
    seed = next(s for s, _ in console_shop.planted.complements if s != blocked)
    assert blocked not in ids(api_list(served.api, seed, k=50))
    text_ = page(served.editor, "/console/product", id=blocked)
    shown = html.unescape(text_)
    label = f"{served.app.state.serving.index.names[blocked]} ({blocked})"
    assert f"block {label} everywhere" in shown and "recalled" in shown
    assert f"boost {label} (score × 50.0)" in shown
    assert post(served.editor, decide, action="boost", product=blocked,
                factor="0").status_code == 400
    assert [d["kind"] for d in served.store.list_decisions()] == [
        "boost", "boost", "block_product"]


def test_bulk_decisions_on_a_filter_and_batch_undo(served: Served, console_shop: ConsoleShop,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {"q": "mug", "min_lift": "2"}
    expected = brute_select(console_shop.rules, RuleBrowserQuery.model_validate(fields))
    assert 3 < len(expected) <= rule_pages.BULK_CAP
    post(served.editor, "/console/rules/decide", action="approve", scope="matching",
         reason="checked by hand", **fields)
    approved = page(served.editor, "/console/rules", status="approved", **fields)
    assert f"Approved {len(expected):,} rules." in flashes(approved)
    assert {k for k, _ in shown_rules(approved)} == set(expected[: rule_pages.PAGE_SIZE])
    audit = served.store.audit_log(limit=len(expected))
    assert len({entry["batch_id"] for entry in audit}) == 1
    assert {e["reason"] for e in audit} == {"checked by hand"}
    # again: nothing new to approve
    post(served.editor, "/console/rules/decide", action="approve", scope="matching", **fields)
    assert f"Approved 0 rules ({len(expected):,} already approved)." in flashes(
        page(served.editor, "/console/rules"))
    post(served.editor, "/console/undo", batch_id=audit[0]["batch_id"])
    assert served.store.list_decisions() == []
    # the cap: only the first rules of the order shown
    monkeypatch.setattr(rule_pages, "BULK_CAP", 3)
    post(served.editor, "/console/rules/decide", action="reject", scope="matching",
         reason="too many", **fields)
    text_ = page(served.editor, "/console/rules", status="rejected", **fields)
    assert "Only the first 3 of the" in " ".join(flashes(text_))
    assert [k for k, _ in shown_rules(text_)] == expected[:3]


def test_the_latest_decision_on_a_rule_wins_and_undo_restores_the_one_before(
        served: Served, console_shop: ConsoleShop) -> None:
    seed, partner = console_shop.planted.complements[1]
    key = f"{seed}->{partner}"
    post(served.editor, "/console/rules/decide", action="approve", key=key)
    post(served.editor, "/console/rules/decide", action="reject", key=key, reason="seasonal")
    assert shown_rules(page(served.viewer, "/console/rules", q=seed, status="rejected")) == [
        (key, "rejected")]
    assert key not in rule_items(api_list(served.api, seed))
    reject = served.store.list_decisions()[-1]
    post(served.editor, "/console/undo", decision_id=reject["id"])
    assert shown_rules(page(served.viewer, "/console/rules", q=seed, status="approved")) == [
        (key, "approved")]
    assert rule_items(api_list(served.api, seed)).get(key) == partner
    post(served.editor, "/console/rules/decide", action="reject", key=key, reason="again")
    post(served.editor, "/console/rules/decide", action="approve", key=key)
    assert rule_items(api_list(served.api, seed)).get(key) == partner  # approve wins again


def test_the_audit_log_says_who_did_what_when_and_why(served: Served,
                                                      console_shop: ConsoleShop) -> None:
    seed, partner = console_shop.planted.complements[4]
    key = f"{seed}->{partner}"
    post(served.editor, "/console/rules/decide", action="reject", key=key, reason="odd pair")
    [decision] = served.store.list_decisions()
    post(served.editor, "/console/undo", decision_id=decision["id"], reason="my mistake")
    response = served.api.post("/admin/decisions", headers=ADMIN, json={
        "kind": "block_product", "product_id": partner, "reason": "via API"})
    assert response.status_code == 201
    served.api.delete(f"/admin/decisions/{response.json()['id']}", headers=ADMIN)
    newest = served.store.audit_log(limit=4)
    assert [(e["action"], e["username"], e["reason"]) for e in newest] == [
        ("undo", None, None), ("block_product", None, "via API"),
        ("undo", "edna", "my mistake"), ("block_rule", "edna", "odd pair")]
    text_ = page(served.viewer, "/console/audit")
    rows = re.findall(r"<tr class=\"[^\"]*\">\s*<td>([^<]+)</td>\s*<td>([^<]+)</td>\s*"
                      r"<td>([^<]+)</td>\s*<td>([^<]+)</td>\s*<td>([^<]*)</td>", text_)
    names = served.app.state.serving.index.names  # names where the catalog has them (#16)
    product, rule = f"{names[partner]} ({partner})", (f"{names[seed]} ({seed}) -> "
                                                       f"{names[partner]} ({partner})")
    assert [(who, action, html.unescape(what), why) for _, who, action, what, why in
            rows[:4]] == [
        ("admin API", "undo", f"undo: block {product} everywhere", ""),
        ("admin API", "block_product", f"block {product} everywhere", "via API"),
        ("edna", "undo", f"undo: reject rule {rule}", "my mistake"),
        ("edna", "block_rule", f"reject rule {rule}", "odd pair")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", when) for when, *_ in rows)


# -- retraining ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DATABASES)
def test_decisions_survive_retraining_and_lost_ones_are_flagged(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    config = write_small_config(tmp_path)
    run_pipeline(load_config(config), show_progress=False)
    with fresh_database(kind, tmp_path, _postgres(request, kind)) as url:
        settings = load_config(config).serving_settings().model_copy(update={
            "database_url": url, "api_key": API_KEY})
        app = create_app(settings)
        with TestClient(app) as api:
            add_users(app.state.serving.store)
            editor = sign_in(app, "edna")
            post(editor, "/console/rules/decide", action="reject", key="tea->kettle",
                 reason="kettle discontinued")
            post(editor, "/console/rules/decide", action="reject", key="mug->tea",
                 reason="not for mugs")
            post(editor, "/console/product/decide", action="boost", product="kettle",
                 factor="2")
            assert "Every active decision has its rule or products" in page(
                editor, "/console/flagged")
            version = api.get("/readyz").json()["version"]
            # retrain without the kettle (orders and catalog): its rules and itself are gone
            for raw in ("orders.csv", "catalog.csv"):
                path = tmp_path / "raw" / raw
                path.write_text("".join(line for line in path.read_text().splitlines(True)
                                        if "kettle" not in line))
            run_pipeline(load_config(config), show_progress=False)
            assert api.post("/admin/reload", headers=ADMIN).json()["error"] is None
            assert api.get("/readyz").json()["version"] != version
            flagged = page(editor, "/console/flagged")
            assert "reject rule Green Tea (tea) -&gt; kettle" in flagged  # kettle is gone
            assert "rule not found in version" in flagged
            assert "product kettle not in version" in flagged
            assert "mug-&gt;tea" not in flagged
            assert len(app.state.serving.store.list_decisions()) == 3  # kept, still active
            assert ("mug->tea", "rejected") in shown_rules(page(editor, "/console/rules"))
            body = api.get("/v1/items/mug/bought-together").json()
            assert "mug->tea" not in rule_items(body)  # still in force on the new version
            assert "rule not found in version" in page(editor, "/console/audit")


# -- the users command ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DATABASES)
def test_users_command(kind: str, tmp_path: Path, request: pytest.FixtureRequest,
                       monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
                       ) -> None:
    with fresh_database(kind, tmp_path, _postgres(request, kind)) as url:
        config = write_small_config(tmp_path)
        config.write_text(config.read_text().replace(
            f'database_url = "sqlite:///{tmp_path / "recsys.db"}"', f'database_url = "{url}"'))

        def users(*args: str, stdin: str = "") -> int:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
            return main(["-q", "users", *args, "--config", str(config)])

        assert users("list") == 0
        assert "no console users yet" in capsys.readouterr().out
        assert users("add", "ann", "--role", "editor", "--password-stdin",
                     stdin="ann-password-1\n") == 0
        assert users("add", "bo", "--password-stdin", stdin="bo-password-22\n") == 0
        assert users("add", "ann", "--password-stdin", stdin="ann-password-2\n") == 1
        assert "user 'ann' exists already" in capsys.readouterr().err
        assert users("add", "cy", "--password-stdin", stdin="short\n") == 1
        assert users("add", "cy", "--role", "admin", "--password-stdin",
                     stdin="cy-password-1\n") == 1
        assert users("add", "cy") == 1  # no terminal to ask on, and no --password-stdin
        assert users("add", "c y", "--password-stdin", stdin="cy-password-1\n") == 1
        err = capsys.readouterr().err
        assert "at least 10 characters" in err and "unknown role 'admin'" in err
        assert "'c y' must be 1 to 64 printable characters" in err
        assert "--password-stdin" in err
        assert users("list") == 0
        listed = capsys.readouterr().out.splitlines()
        assert [line.split()[:2] for line in listed] == [["ann", "editor"], ["bo", "viewer"]]
        store = ServingStore(url)
        ann = store.user("ann")
        store.dispose()
        assert ann is not None and ann["password_hash"].startswith("$argon2id$")
        assert "ann-password-1" not in ann["password_hash"]
        assert verify_password(ann["password_hash"], "ann-password-1")
        app = create_app(load_config(config).serving_settings())
        with TestClient(app):
            client = sign_in(app, "ann", "ann-password-1")
            # no artifact published here: the console says so after sign-in
            response = client.get("/console/rules")
            assert response.status_code == 503 and "No artifact version" in response.text


def test_repeated_failed_sign_ins_are_throttled(console_shop: ConsoleShop, tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path, None) as url:
        app = create_app(console_shop.settings.model_copy(update={"database_url": url}))
        with TestClient(app) as client:
            add_users(app.state.serving.store)
            client.get("/console/login")

            def attempt(name: str, password: str) -> Any:
                return client.post("/console/login", follow_redirects=False, data={
                    "username": name, "password": password, "csrf_token": csrf(client)})

            for _ in range(5):
                assert attempt("edna", "not-her-password").status_code == 401
            locked = attempt("edna", USERS["edna"][1])  # even the right password waits
            assert locked.status_code == 429 and 0 < int(locked.headers["retry-after"]) <= 900
            assert "Too many failed sign-ins from this address. Try again in 15 minutes." in (
                locked.text)
            assert attempt("vic", USERS["vic"][1]).status_code == 303  # another user may sign in
