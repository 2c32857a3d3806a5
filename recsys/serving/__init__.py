"""Serving: the lookup index over a published artifact (``index``), request-time ranking
(``recommend``), what each endpoint answers (``service``), and the API's part of the app
(``api``: state, middleware, ``routes``). It never imports the console or the storefront."""

__all__ = ["index", "recommend", "service", "api"]
