"""The API's routes, one module-level router per resource; ``ROUTERS`` in the order the app
includes them (which is the order of the OpenAPI document)."""

from recsys.serving.routes import admin, cart, customers, events, items, live, ops, popular

__all__ = ["ROUTERS"]

ROUTERS = (ops.router, ops.version_router, items.router, cart.router, customers.router,
           popular.router, live.router, events.router, admin.router)
