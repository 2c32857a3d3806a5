"""Serving: the lookup index over a published artifact (``index``) and the FastAPI app (``app``)."""

__all__ = ["index", "app"]
