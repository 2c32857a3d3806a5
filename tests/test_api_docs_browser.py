"""``/docs`` in Chromium with every request outside the server blocked (issue #16): Swagger
UI's JavaScript and CSS come from the package, so the operations render offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from recsys.app import create_app
from recsys.config import ServingSettings
from tests.browser import live_server

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route


def test_docs_render_every_operation_without_internet(page: Page, tmp_path: Path) -> None:
    app = create_app(ServingSettings(artifacts=str(tmp_path / "artifacts"),
                                     database_url=f"sqlite:///{tmp_path / 'recsys.db'}"))
    operations = [(method.upper(), path) for path, item in app.openapi()["paths"].items()
                  for method in item]
    outside: list[str] = []
    with live_server(app) as base:

        def only_the_server(route: Route) -> None:
            url = route.request.url
            if url.startswith(base + "/"):
                route.continue_()
            else:  # a CDN, the validator badge, fonts: none may be fetched
                outside.append(url)
                route.abort()

        page.route("**/*", only_the_server)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/docs")
        page.locator(".opblock").first.wait_for()
        shown = page.locator(".opblock .opblock-summary").evaluate_all(
            "blocks => blocks.map(b => [b.querySelector('.opblock-summary-method').textContent,"
            " b.querySelector('.opblock-summary-path').getAttribute('data-path')])")
        assert sorted(map(tuple, shown)) == sorted(operations)
        assert page.title() == "recsys API"
        assert page.request.get(f"{base}/redoc").status == 404  # CDN-only: not served
    assert outside == [] and errors == []
