"""The console's pages, one module-level router per page, mounted under ``/console`` with the
CSRF check on every route: sign-in (``auth``), the rules browser (``rules``), its exports
(``exports``), product pages (``product``), undo, audit log and flagged decisions
(``audit``), and customer value (``customers``)."""

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from recsys.console.deps import check_csrf
from recsys.console.pages import audit, auth, customers, exports, product, rules
from recsys.console.site import HERE, page_router

__all__ = ["router"]

assets = page_router()


@assets.get("/static/console.css")
def stylesheet() -> Response:
    return Response((HERE / "static" / "console.css").read_bytes(), media_type="text/css")


router = APIRouter(dependencies=[Depends(check_csrf)])
for _pages in (assets, auth.router, rules.router, exports.router, product.router,
               audit.router, customers.router):
    router.include_router(_pages)
