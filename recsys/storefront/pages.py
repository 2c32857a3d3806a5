"""The widget script (/static/recsys-widget.js) and a demo storefront using it (/storefront/).

The demo pages show the served index's catalog: a product page with the also-viewed,
bought-together and upsell lists, and a cart (kept in the browser) with cart add-ons. Every
value is escaped by Jinja2's autoescape; pages carry a CSP that allows only the site's own
files.
"""

from __future__ import annotations

from pathlib import Path as FilePath
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, FastAPI, HTTPException, Path, Request
from fastapi.responses import FileResponse, Response
from fastapi.templating import Jinja2Templates

from recsys.serving.index import ServingIndex

__all__ = ["mount_storefront", "SECURITY_HEADERS"]

HERE = FilePath(__file__).resolve().parent
STATIC = HERE / "static"
ASSETS = {"storefront.js": "text/javascript; charset=utf-8",
          "storefront.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"}
INDEX_SIZE = 12

templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True))
widget = APIRouter(include_in_schema=False)
demo = APIRouter(prefix="/storefront", include_in_schema=False)


@widget.get("/static/recsys-widget.js")
def widget_script() -> FileResponse:
    """The embeddable widget (see the comment at its top)."""
    return FileResponse(STATIC / "recsys-widget.js", media_type="text/javascript; charset=utf-8",
                        headers=ASSET_HEADERS)


@demo.get("/static/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail=f"no asset {name}")
    return FileResponse(STATIC / name, media_type=ASSETS[name], headers=ASSET_HEADERS)


def _page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    context = {"storefront_key": request.app.state.storefront_key, **context}
    return templates.TemplateResponse(request, template, context, status_code=status,
                                      headers=SECURITY_HEADERS)


def _not_ready(request: Request) -> Response:
    return _page(request, "message.html", 503, title="Not open yet",
                 message="The recommendation service has no artifact loaded yet; publish one "
                         "(recsys run) and reload this page.")


def _product(index: ServingIndex, product_id: str) -> dict[str, Any]:
    price = index.prices.get(product_id)
    return {"product_id": product_id, "name": index.names.get(product_id, product_id),
            "category": index.categories.get(product_id, ""),
            "price": "" if price is None else f"{price:.2f}",
            "raw_price": "" if price is None else repr(price)}


@demo.get("/")
def shop_index(request: Request) -> Response:
    """Best sellers, each linking to its demo product page."""
    index: ServingIndex | None = request.app.state.serving.index
    if index is None:
        return _not_ready(request)
    ids = [p for p, _ in index.best_sellers(None, INDEX_SIZE)] or index.ids[:INDEX_SIZE]
    return _page(request, "index.html", version=index.version,
                 products=[_product(index, p) for p in ids])


@demo.get("/products/{product_id}")
def product_page(request: Request,
                 product_id: Annotated[str, Path(min_length=1, max_length=128)]) -> Response:
    """A product page with the also-viewed and bought-together widgets."""
    index: ServingIndex | None = request.app.state.serving.index
    if index is None:
        return _not_ready(request)
    if product_id not in index.code_of and product_id not in index.names:
        return _page(request, "message.html", 404, title="Product not found",
                     message=f"There is no product {product_id} in this shop.")
    return _page(request, "product.html", product=_product(index, product_id))


@demo.get("/cart")
def cart_page(request: Request) -> Response:
    """The cart (kept in the browser's localStorage) with the cart add-ons widget."""
    return _page(request, "cart.html")


def mount_storefront(app: FastAPI, *, demo_pages: bool, key: str = "") -> None:
    """Serve the widget script, and the demo storefront when ``demo_pages`` is true (its
    pages give the widget the public storefront ``key``)."""
    app.state.storefront_key = key
    app.include_router(widget)
    if demo_pages:
        app.include_router(demo)
