"""The composition root: ``create_app(settings)`` builds the FastAPI app from its parts, the
API (``recsys.serving``), the merchandiser console and the storefront. Only this module (and
the CLI above it) knows all three; none of them imports it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from recsys import forget_api
from recsys.config import ServingSettings
from recsys.console import Console
from recsys.console import router as console_router
from recsys.console.site import HERE as CONSOLE_HERE
from recsys.errors import ConfigError
from recsys.serving import api
from recsys.serving.keys import warn_about_default_key
from recsys.serving.memory import collect_young_less_often
from recsys.serving.state import lifespan
from recsys.storefront.pages import mount_storefront

__all__ = ["create_app", "app_from_env"]

log = logging.getLogger("recsys.console")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The serving state's lifespan, and the console's session secret read (or generated) at
    start, so every worker has it before the first sign-in."""
    try:
        app.state.console.codec  # noqa: B018 - reading it loads the secret
    except ConfigError as exc:
        log.error("the console cannot sign sessions: %s", exc)
    async with lifespan(app):
        yield


def create_app(settings: ServingSettings, *, fast_path: bool = True) -> FastAPI:
    """Build the app for ``settings``; the artifact is loaded when the app starts.
    ``fast_path=False`` leaves every request to the FastAPI routes (tests compare the two).
    In production the interactive docs and the OpenAPI document are not served."""
    warn_about_default_key(settings)
    docs = settings.environment != "production"
    app = FastAPI(title="recsys", version="0.1.0", lifespan=_lifespan, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json" if docs else None,
                  description="Cross-sell and recommendation API for online shops. Every list "
                              "item says why it is there (reason); every response carries the "
                              "model_version and a request_id.")
    api.install(app, settings, fast_path=fast_path)

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, Any]:
        return {"service": "recsys", "docs": "/docs" if docs else None, "health": "/healthz",
                "ready": "/readyz",
                "version": "/v1/version", "popular": "/v1/popular?k=5"}

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        """The icon browsers ask every page for (a 404 in every log otherwise)."""
        return FileResponse(CONSOLE_HERE / "static" / "favicon.ico",
                            media_type="image/x-icon",
                            headers={"Cache-Control": "public, max-age=86400"})

    if docs:
        _offline_docs(app)
    api.include_routes(app)
    app.include_router(forget_api.router)
    mount_storefront(app, demo_pages=settings.storefront, key=settings.storefront_key)
    app.state.console = Console(app.state.serving)
    app.include_router(console_router)
    return app


def _offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI with its JavaScript and CSS served from the installed
    swagger-ui-bundle-v2 package (FastAPI's default page loads them from a CDN, and is blank
    without internet). ReDoc, CDN-only in FastAPI, is not served."""
    app.mount("/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
              name="docs-static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json",
                                   title=f"{app.title} API",
                                   oauth2_redirect_url="/docs/oauth2-redirect",
                                   swagger_js_url="/docs/static/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/static/swagger-ui.css",
                                   swagger_favicon_url="/favicon.ico")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory`` (each ``recsys serve`` worker): settings from
    RECSYS_SERVING_* variables, and the process's garbage collector tuned for serving
    (``recsys.serving.memory``; an app made with ``create_app`` leaves its process's alone)."""
    collect_young_less_often()
    return create_app(ServingSettings())
