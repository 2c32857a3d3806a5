"""Who is calling: the public storefront key, the secret server key, or a short-lived signed
customer token the shop's backend issued (issue #14, point 4).

- storefront key (``X-Storefront-Key``, public, in the shop's pages): item lists, cart add-ons,
  best sellers, bundles, events. Empty (development only) leaves these open.
- server key (``X-API-Key``, ``[serving] api_key``, the shop's backend only): everything,
  customer lists with purchase details, admin.
- customer token (``X-Customer-Token``): that one customer's list, without purchase details.
  ``EXPIRES.SIGNATURE`` where EXPIRES is a Unix time and SIGNATURE the hex HMAC-SHA256, keyed
  with the server key, of ``recsys-customer-token\\n{customer_id}\\n{EXPIRES}``.

Keys are compared in constant time. The checks run in the route's body, so a malformed request
is answered 422 whoever sends it, and a well-formed one without the right key 401.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Security
from fastapi.security import APIKeyHeader

from recsys.config import DEFAULT_API_KEY, ServingSettings
from recsys.serving.recommend import Result
from recsys.serving.state import State

__all__ = ["STOREFRONT_HEADER", "SERVER_HEADER", "TOKEN_HEADER", "PURCHASE_DETAILS", "Caller",
           "CallerDep", "customer_token", "key_matches", "storefront_allowed",
           "without_purchase_details", "warn_about_default_key"]

log = logging.getLogger("recsys.serving")

STOREFRONT_HEADER = "X-Storefront-Key"
SERVER_HEADER = "X-API-Key"
TOKEN_HEADER = "X-Customer-Token"
PURCHASE_DETAILS = ("days_since_purchase", "times_bought", "due")  # evidence keys
_TOKEN_CONTEXT = b"recsys-customer-token"

_storefront = APIKeyHeader(name=STOREFRONT_HEADER, auto_error=False, scheme_name="storefront",
                           description="the public storefront key (item lists, events)")
_server = APIKeyHeader(name=SERVER_HEADER, auto_error=False, scheme_name="server",
                       description="the secret server key (customer lists, admin)")
_token = APIKeyHeader(name=TOKEN_HEADER, auto_error=False, scheme_name="customer_token",
                      description="a signed customer token issued by the shop's backend")


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; an empty expected key matches nothing."""
    return bool(expected) and given is not None and hmac.compare_digest(
        given.encode(), expected.encode())


def storefront_allowed(settings: ServingSettings, storefront: str | None,
                       server: str | None) -> bool:
    """Whether a storefront endpoint may answer: open without a storefront key, else the
    storefront or the server key."""
    return (not settings.storefront_key or key_matches(storefront, settings.storefront_key)
            or key_matches(server, settings.api_key))


def _signature(server_key: str, customer_id: str, expires: int) -> str:
    message = b"\n".join((_TOKEN_CONTEXT, customer_id.encode(), str(expires).encode()))
    return hmac.new(server_key.encode(), message, hashlib.sha256).hexdigest()


def customer_token(server_key: str, customer_id: str, expires: int) -> str:
    """The token the shop's backend gives a signed-in shopper (``expires``: Unix time)."""
    return f"{expires}.{_signature(server_key, customer_id, expires)}"


def _token_valid(settings: ServingSettings, token: str | None, customer_id: str) -> bool:
    """A token for this customer, not expired, and not valid longer than allowed."""
    if not token or "." not in token:
        return False
    expires_text, signature = token.split(".", 1)
    if not (expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 12):
        return False
    expires, now = int(expires_text), time.time()
    if not now < expires <= now + settings.customer_token_max_s:
        return False
    return hmac.compare_digest(signature.encode(),
                               _signature(settings.api_key, customer_id, expires).encode())


@dataclass(frozen=True)
class Caller:
    """The credentials a request carries, checked against the settings on demand."""

    settings: ServingSettings
    storefront: str | None
    server: str | None
    token: str | None

    @property
    def is_server(self) -> bool:
        return key_matches(self.server, self.settings.api_key)

    def need_storefront(self) -> None:
        """401 unless the storefront (or server) key is given, or none is configured."""
        if not storefront_allowed(self.settings, self.storefront, self.server):
            raise HTTPException(status_code=401, detail=f"missing or wrong {STOREFRONT_HEADER}")

    def need_customer(self, customer_id: str) -> bool:
        """401 unless the server key or a valid token for this customer is given; True for
        the server key (purchase details shown)."""
        if self.is_server:
            return True
        if _token_valid(self.settings, self.token, customer_id):
            return False
        raise HTTPException(status_code=401, detail=f"a customer's list needs the server key "
                                                    f"({SERVER_HEADER}) or a valid "
                                                    f"{TOKEN_HEADER} for that customer")


def get_caller(state: State,
               storefront: Annotated[str | None, Security(_storefront)],
               server: Annotated[str | None, Security(_server)],
               token: Annotated[str | None, Security(_token)]) -> Caller:
    return Caller(state.settings, storefront, server, token)


CallerDep = Annotated[Caller, Depends(get_caller)]


def without_purchase_details(result: Result) -> Result:
    """The list with the customer's purchase details taken out of every item's evidence."""
    items: list[dict[str, Any]] = []
    for item in result.items:
        reason = item.get("reason") or {}
        evidence = {k: v for k, v in (reason.get("evidence") or {}).items()
                    if k not in PURCHASE_DETAILS}
        items.append({**item, "reason": {**reason, "evidence": evidence}})
    return replace(result, items=items)


def warn_about_default_key(settings: ServingSettings) -> None:
    """Log an error at start while the server key is the published default."""
    if settings.api_key == DEFAULT_API_KEY:
        log.error("the server key (api_key) is the default %r: anyone can use the admin API "
                  "and read every customer's list; set RECSYS_SERVING_API_KEY to a secret "
                  "(production mode refuses to start with it)", DEFAULT_API_KEY)
