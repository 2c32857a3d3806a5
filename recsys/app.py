"""The composition root: ``create_app(settings)`` builds the FastAPI app from its parts, the
API (``recsys.serving``), the merchandiser console and the storefront. Only this module (and
the CLI above it) knows all three; none of them imports it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from recsys.config import ServingSettings
from recsys.console import Console
from recsys.console import router as console_router
from recsys.errors import ConfigError
from recsys.serving import api
from recsys.serving.keys import warn_about_default_key
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
    app = FastAPI(title="recsys", version="0.1.0", lifespan=_lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None,
                  description="Cross-sell and recommendation API for online shops. Every list "
                              "item says why it is there (reason); every response carries the "
                              "model_version and a request_id.")
    api.install(app, settings, fast_path=fast_path)

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, Any]:
        return {"service": "recsys", "docs": "/docs" if docs else None, "health": "/healthz", "ready": "/readyz",
                "version": "/v1/version", "popular": "/v1/popular?k=5"}

    api.include_routes(app)
    mount_storefront(app, demo_pages=settings.storefront, key=settings.storefront_key)
    app.state.console = Console(app.state.serving)
    app.include_router(console_router)
    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory``: settings from RECSYS_SERVING_* variables."""
    return create_app(ServingSettings())
