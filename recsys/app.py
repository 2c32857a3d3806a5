"""The composition root: ``create_app(settings)`` builds the FastAPI app from its parts, the
API (``recsys.serving``), the merchandiser console and the storefront. Only this module (and
the CLI above it) knows all three; none of them imports it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from recsys import forget_api
from recsys.config import ServingSettings
from recsys.console import Console
from recsys.console import router as console_router
from recsys.serving import api
from recsys.serving.state import lifespan
from recsys.storefront.pages import mount_storefront

__all__ = ["create_app", "app_from_env"]


def create_app(settings: ServingSettings, *, fast_path: bool = True) -> FastAPI:
    """Build the app for ``settings``; the artifact is loaded when the app starts.
    ``fast_path=False`` leaves every request to the FastAPI routes (tests compare the two)."""
    app = FastAPI(title="recsys", version="0.1.0", lifespan=lifespan,
                  description="Cross-sell and recommendation API for online shops. Every list "
                              "item says why it is there (reason); every response carries the "
                              "model_version and a request_id.")
    api.install(app, settings, fast_path=fast_path)

    @app.get("/", include_in_schema=False)
    def root() -> dict[str, Any]:
        return {"service": "recsys", "docs": "/docs", "health": "/healthz", "ready": "/readyz",
                "version": "/v1/version", "popular": "/v1/popular?k=5"}

    api.include_routes(app)
    app.include_router(forget_api.router)
    mount_storefront(app, demo_pages=settings.storefront)
    app.state.console = Console(app.state.serving)
    app.include_router(console_router)
    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory``: settings from RECSYS_SERVING_* variables."""
    return create_app(ServingSettings())
