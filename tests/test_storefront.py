"""The demo storefront pages and the widget script, served by the API (TestClient).

The small shop's "tea" is renamed to a name holding markup: every page must show it as text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient

from recsys.app import create_app
from recsys.config import ServingSettings, load_config
from recsys.pipeline import run_pipeline
from recsys.storefront.pages import SECURITY_HEADERS
from tests.conftest import write_small_config

EVIL = "<img src=x onerror=alert(1)>Green Tea"
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;Green Tea"


def publish_shop(tmp: Path) -> ServingSettings:
    """Publish the small shop, with markup in the name of "tea"; its serving settings."""
    # not the shared demo shop: a product name must carry markup (escaping is under test)
    config = write_small_config(tmp)
    catalog = tmp / "raw" / "catalog.csv"
    catalog.write_text(catalog.read_text().replace("Green Tea", EVIL))
    run_pipeline(load_config(config), show_progress=False)
    return load_config(config).serving_settings(reload_interval_s=0)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ServingSettings:
    return publish_shop(tmp_path_factory.mktemp("storefront"))


@pytest.fixture(scope="module")
def client(settings: ServingSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


def assert_page(response: httpx.Response, status: int = 200) -> None:
    """An HTML page with the security headers: only the site's own scripts, no inline ones."""
    assert response.status_code == status
    headers = response.headers
    assert headers["content-type"] == "text/html; charset=utf-8"
    for name, value in SECURITY_HEADERS.items():
        assert headers[name] == value
    policy = headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


def test_index_lists_best_sellers(client: TestClient) -> None:
    response = client.get("/storefront/")
    assert_page(response)
    assert 'href="/storefront/products/mug"' in response.text
    assert "Ceramic Mug" in response.text and "8.50" in response.text
    assert 'href="/storefront/cart"' in response.text


def test_product_page_holds_the_widgets(client: TestClient) -> None:
    response = client.get("/storefront/products/mug")
    assert_page(response)
    text = response.text
    assert "<h1>Ceramic Mug</h1>" in text and "Home &gt; Kitchen &gt; Mugs" in text
    assert '<script src="/static/recsys-widget.js"' in text
    for kind in ("also-viewed", "bought-together", "upsell", "recently-viewed"):
        assert f'data-recsys="{kind}" data-product-id="mug"' in text
    assert 'data-recsys="trending" data-category="Home &gt; Kitchen &gt; Mugs"' in text
    assert "<script>" not in text  # no inline script: the CSP would block it


def test_product_name_with_markup_is_escaped(client: TestClient) -> None:
    response = client.get("/storefront/products/tea")
    assert_page(response)
    assert EVIL not in response.text
    assert f"<h1>{ESCAPED}</h1>" in response.text
    assert f'data-name="{ESCAPED}"' in response.text
    index = client.get("/storefront/").text
    assert EVIL not in index and ESCAPED in index


def test_unknown_product_is_a_friendly_404(client: TestClient) -> None:
    response = client.get("/storefront/products/" + quote("<b>nope"))
    assert_page(response, 404)
    assert "Product not found" in response.text
    assert "&lt;b&gt;nope" in response.text and "<b>nope" not in response.text


def test_cart_page_holds_the_add_ons_widget(client: TestClient) -> None:
    response = client.get("/storefront/cart")
    assert_page(response)
    assert 'data-recsys="cart-add-ons"' in response.text
    assert '<script src="/storefront/static/storefront.js" defer>' in response.text


def test_scripts_and_styles_are_served(client: TestClient) -> None:
    widget = client.get("/static/recsys-widget.js")
    assert widget.status_code == 200
    assert widget.headers["content-type"] == "text/javascript; charset=utf-8"
    assert widget.headers["x-content-type-options"] == "nosniff"
    assert "window.RecsysWidget" in widget.text
    assert "innerHTML" not in widget.text  # names are set as text only
    assert len(widget.content) < 10_000
    shop = client.get("/storefront/static/storefront.js")
    assert shop.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "innerHTML" not in shop.text
    css = client.get("/storefront/static/storefront.css")
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    assert client.get("/storefront/static/pages.py").status_code == 404
    assert client.get("/storefront/static/..%2Fpages.py").status_code == 404


def test_storefront_can_be_switched_off(settings: ServingSettings) -> None:
    off = settings.model_copy(update={"storefront": False})
    with TestClient(create_app(off)) as client:
        assert client.get("/storefront/").status_code == 404
        assert client.get("/storefront/products/mug").status_code == 404
        assert client.get("/static/recsys-widget.js").status_code == 200  # for real shops


def test_pages_say_when_no_artifact_is_loaded(tmp_path: Path) -> None:
    empty = ServingSettings(artifacts=str(tmp_path / "artifacts"),
                            database_url=f"sqlite:///{tmp_path / 'recsys.db'}",
                            reload_interval_s=0)
    with TestClient(create_app(empty)) as client:
        for path in ("/storefront/", "/storefront/products/mug"):
            response = client.get(path)
            assert_page(response, 503)
            assert "no artifact loaded" in response.text
        assert_page(client.get("/storefront/cart"))
