"""The console in a real browser: headless Chromium against a real server (uvicorn, in a thread)
over the console's demo artifact. Sign in, filter rules, reject a rule and see it leave the
API, pin a product and see it at its position. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from recsys.app import create_app
from recsys.console.rules import RuleBrowserQuery
from recsys.serving.store import ServingStore
from tests.browser import live_server, screenshot
from tests.test_console import USERS, ConsoleShop, add_users, console_shop  # noqa: F401
from tests.test_console_rules import brute_select

if TYPE_CHECKING:
    from playwright.sync_api import Page


@dataclass
class Server:
    base: str
    store: ServingStore

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        """What a storefront gets from the API now."""
        response = httpx.get(f"{self.base}{path}", params=params, timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def rule_keys(self, seed: str) -> set[str]:
        body = self.api(f"/v1/items/{seed}/bought-together", k=10)
        return {item["reason"]["evidence"]["rule"] for item in body["items"]
                if item["reason"]["source"] == "rule"}


@pytest.fixture(scope="module")
def server(console_shop: ConsoleShop,  # noqa: F811 - the shared fixture
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = tmp_path_factory.mktemp("console_browser") / "console.db"
    app = create_app(console_shop.settings.model_copy(
        update={"database_url": f"sqlite:///{database}"}))
    add_users(app.state.serving.store)
    with live_server(app) as base:
        yield Server(base, app.state.serving.store)


@pytest.fixture
def editor(page: Page, server: Server) -> Iterator[Page]:
    """A page signed in as the editor; no decision is left in force afterwards."""
    problems: list[str] = []  # CSP violations, script errors, failed requests
    page.on("console", lambda message: problems.append(message.text) if message.type == "error"
            and not message.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
    page.goto(f"{server.base}/console/rules")
    assert page.url.startswith(f"{server.base}/console/login?next=")
    page.get_by_label("User name").fill("edna")
    page.get_by_label("Password").fill(USERS["edna"][1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.base}/console/rules")
    yield page
    assert problems == []
    server.store.deactivate_decisions([d["id"] for d in server.store.list_decisions()],
                                      by="cleanup", reason=None)


def shown_keys(page: Page) -> list[str]:
    keys: list[str] = page.locator("tr.rule").evaluate_all(
        "rows => rows.map(row => row.dataset.key)")
    return keys


def test_sign_in_and_filter_rules(editor: Page, server: Server,
                                  console_shop: ConsoleShop) -> None:  # noqa: F811
    assert "edna · editor" in editor.locator("header").inner_text()
    screenshot(editor, "console-signed-in")
    seed = console_shop.planted.complements[0][0]
    editor.get_by_label("Product id or name").fill(seed)
    editor.get_by_label("Min lift").fill("1.5")
    editor.get_by_label("Sort by").select_option("confidence")
    editor.get_by_role("button", name="Filter").click()
    editor.wait_for_url("**/console/rules?q=*")
    expected = brute_select(console_shop.rules,
                            RuleBrowserQuery(q=seed, min_lift=1.5, sort="confidence"))
    assert len(expected) > 0
    assert shown_keys(editor) == expected[:50]
    assert f"{len(expected):,} of" in editor.locator("h1").inner_text()
    screenshot(editor, "console-rules-filtered")


def test_reject_a_rule_and_see_it_leave_the_api(editor: Page, server: Server,
                                                console_shop: ConsoleShop) -> None:  # noqa: F811
    seed, partner = console_shop.planted.complements[2]
    key = f"{seed}->{partner}"
    assert key in server.rule_keys(seed)
    at = brute_select(console_shop.rules, RuleBrowserQuery(q=seed, sort="count")).index(key)
    editor.goto(f"{server.base}/console/rules?q={seed}&sort=count&page={at // 50 + 1}")
    row = editor.locator(f'tr.rule[data-key="{key}"]')
    row.get_by_role("checkbox").check()
    editor.get_by_label("Reason").fill("not a real complement")
    editor.get_by_role("button", name="Reject").click()
    editor.get_by_text("Rejected 1 rule.").wait_for()
    assert key not in server.rule_keys(seed)
    editor.goto(f"{server.base}/console/rules?q={seed}&status=rejected")
    rejected = editor.locator(f'tr.rule[data-key="{key}"]')
    assert "by edna: not a real complement" in rejected.inner_text()
    screenshot(editor, "console-rule-rejected")
    rejected.get_by_role("button", name="Undo").click()
    editor.get_by_text("Undone 1 decision.").wait_for()
    assert key in server.rule_keys(seed)


def test_pin_a_product_and_see_it_at_its_position(editor: Page, server: Server,
                                                  console_shop: ConsoleShop  # noqa: F811
                                                  ) -> None:
    seed = console_shop.planted.complements[3][0]
    path = f"/v1/items/{seed}/bought-together"
    before = [item["product_id"] for item in server.api(path, k=5)["items"]]
    pinned = next(item["product_id"] for item in server.api("/v1/popular", k=30)["items"]
                  if item["product_id"] not in before and item["product_id"] != seed)
    editor.goto(f"{server.base}/console/product?id={seed}")
    form = editor.locator("#pin-form")
    form.get_by_label("Pin product").fill(pinned)
    form.get_by_label("at position").fill("2")
    form.get_by_label("Reason").fill("spring promotion")
    form.get_by_role("button", name="Pin").click()
    names = {item["product_id"]: item["name"] for item in server.api("/v1/popular",
                                                                      k=30)["items"]}
    editor.get_by_text(f"Pinned {names[pinned]} ({pinned}) at position 2 for ").wait_for()
    shown = editor.locator("#api-bought-together li").evaluate_all(
        "items => items.map(item => item.dataset.product)")
    assert shown[:2] == [before[0], pinned]
    after = server.api(path, k=5)["items"]
    assert after[1]["product_id"] == pinned and after[1]["reason"]["source"] == "pinned"
    screenshot(editor, "console-product-pinned")
