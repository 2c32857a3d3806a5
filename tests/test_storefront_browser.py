"""The widget in a real browser: headless Chromium on the demo storefront of a real server.

The server (uvicorn, in a thread) serves the small shop, whose "tea" has markup in its name.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from recsys.app import create_app
from recsys.serving.store import ServingStore
from tests.browser import live_server, screenshot, wait_until
from tests.test_storefront import EVIL, publish_shop

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page


@dataclass
class Server:
    base: str
    store: ServingStore


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    app = create_app(publish_shop(tmp_path_factory.mktemp("storefront_browser")))
    with live_server(app) as base:
        yield Server(base, app.state.serving.store)


def open_product(page: Page, server: Server, product_id: str) -> dict[str, dict[str, Any]]:
    """Open a product page; the API's answers for its two lists, once both are drawn."""
    with page.expect_response(lambda r: "/also-viewed?" in r.url) as viewed, \
            page.expect_response(lambda r: "/bought-together?" in r.url) as bought:
        page.goto(f"{server.base}/storefront/products/{product_id}")
    for kind in ("also-viewed", "bought-together"):
        page.wait_for_selector(f"[data-recsys={kind}][data-recsys-state=ready]")
    return {"also_viewed": viewed.value.json(), "bought_together": bought.value.json()}


def stored_once(server: Server, **where: Any) -> Callable[[], bool]:
    """Whether exactly one stored event matches ``where`` (for wait_until)."""
    return lambda: server.store.count_events(**where) == 1


def names(page: Page, kind: str) -> list[str]:
    return page.locator(f"[data-recsys={kind}] .recsys-name").all_text_contents()


def test_product_page_renders_the_lists_and_sends_impressions(page: Page,
                                                               server: Server) -> None:
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", dismiss)
    errors: list[str] = []  # a CSP violation would show here
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" else None)
    answers = open_product(page, server, "mug")
    assert screenshot(page, "storefront_product").stat().st_size > 0
    assert page.locator("h1").text_content() == "Ceramic Mug"
    assert page.locator("[data-recsys=also-viewed] .recsys-title").text_content() == \
        "Customers also viewed"
    assert page.locator("[data-recsys=bought-together] .recsys-title").text_content() == \
        "Frequently bought together"
    for kind, placement in (("also-viewed", "also_viewed"),
                            ("bought-together", "bought_together")):
        answer = answers[placement]
        assert names(page, kind) == [item["name"] for item in answer["items"]]
        assert page.get_attribute(f"[data-recsys={kind}]", "data-request-id") == \
            answer["request_id"]
    session = page.evaluate("RecsysWidget.sessionId()")
    for placement, answer in answers.items():
        wait_until(stored_once(server, event_type="impression", request_id=answer["request_id"],
                               placement=placement, session_id=session),
                   f"the {placement} impression")
    wait_until(stored_once(server, event_type="view", product_id="mug", session_id=session),
               "the view event")
    # "tea" has markup in its name: shown as text, never parsed
    assert EVIL in names(page, "also-viewed")
    assert page.locator("[data-recsys] img").count() == 0 and not dialogs
    assert not errors, errors


def test_a_click_sends_the_request_id_and_position(page: Page, server: Server) -> None:
    answer = open_product(page, server, "mug")["bought_together"]
    second = answer["items"][1]["product_id"]
    with page.expect_navigation():
        page.locator("[data-recsys=bought-together] .recsys-item").nth(1).click()
    assert page.url == f"{server.base}/storefront/products/{second}"
    wait_until(stored_once(server, event_type="click", request_id=answer["request_id"],
                           product_id=second, position=2, placement="bought_together"),
               "the click event")


def test_cart_page_renders_add_ons(page: Page, server: Server) -> None:
    open_product(page, server, "mug")
    page.click("#add-to-cart")
    assert page.locator("#cart-count").text_content() == "1"
    with page.expect_response(lambda r: "/v1/cart/add-ons" in r.url) as addons:
        page.goto(f"{server.base}/storefront/cart")
    page.wait_for_selector("[data-recsys=cart-add-ons][data-recsys-state=ready]")
    assert screenshot(page, "storefront_cart").stat().st_size > 0
    assert page.locator("#cart-lines td").first.text_content() == "Ceramic Mug"
    answer = addons.value.json()
    shown = names(page, "cart-add-ons")
    assert shown == [item["name"] for item in answer["items"]] and "Ceramic Mug" not in shown
    session = page.evaluate("RecsysWidget.sessionId()")
    wait_until(stored_once(server, event_type="impression", request_id=answer["request_id"],
                           placement="cart_add_ons", session_id=session), "the cart impression")
    assert server.store.count_events(event_type="add_to_cart", product_id="mug",
                                     session_id=session) == 1
    page.click("#cart-lines button")  # remove the only line: no add-ons for an empty cart
    page.wait_for_selector("[data-recsys=cart-add-ons][data-recsys-state=empty]",
                           state="attached")
    assert page.locator("#cart-empty").is_visible()


def test_an_api_error_leaves_the_widget_empty(page: Page, server: Server) -> None:
    warnings: list[str] = []
    page.on("console", lambda message: warnings.append(message.text)
            if message.type == "warning" else None)
    page.route("**/v1/items/**", lambda route: route.fulfill(status=500, body="boom"))
    page.goto(f"{server.base}/storefront/products/mug")
    for kind in ("also-viewed", "bought-together"):
        page.wait_for_selector(f"[data-recsys={kind}][data-recsys-state=error]",
                               state="attached")
        assert page.locator(f"[data-recsys={kind}] *").count() == 0
    assert any("list not shown" in text for text in warnings), warnings



def test_the_widget_sends_the_storefront_key_of_data_key(
        page: Page, tmp_path_factory: pytest.TempPathFactory) -> None:
    """With a storefront key the demo pages give the widget ``data-key``: the lists, cart
    add-ons and events carry it (without it they would answer 401), each event an event_id."""
    settings = publish_shop(tmp_path_factory.mktemp("storefront_keyed")).model_copy(
        update={"storefront_key": "browser-storefront-key", "api_key": "browser-server-key"})
    app = create_app(settings)
    with live_server(app) as base:
        keyed = Server(base, app.state.serving.store)
        refused: list[int] = []
        page.on("response", lambda r: refused.append(r.status) if r.status == 401 else None)
        answers = open_product(page, keyed, "mug")
        assert all(answer["items"] for answer in answers.values())
        session = page.evaluate("RecsysWidget.sessionId()")
        for placement, answer in answers.items():
            wait_until(stored_once(keyed, event_type="impression",
                                   request_id=answer["request_id"], session_id=session),
                       f"the {placement} impression")
        page.click("#add-to-cart")
        page.goto(f"{base}/storefront/cart")
        page.wait_for_selector("[data-recsys=cart-add-ons][data-recsys-state=ready]")
        wait_until(stored_once(keyed, event_type="add_to_cart", session_id=session),
                   "the add_to_cart event")
        assert refused == []
        stored = keyed.store.count_events(session_id=session)
        assert stored >= 3 and keyed.store.count_events(event_key=None) == 0
