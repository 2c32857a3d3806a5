"""The console session: a signed cookie (itsdangerous) holding the user name, the user's
session epoch, a CSRF token and pending flash messages.

The signing key is the session secret (``console.secret``: configured, or generated at first
start), never derived from a known key. The epoch is compared with the user's row on every
request; sign-out, a password reset or disabling the user changes it, so older cookies stop
working at once.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = ["COOKIE", "MAX_AGE_S", "Session", "SessionCodec"]

COOKIE = "recsys_console"
MAX_AGE_S = 12 * 3600  # a session ends 12 hours after its last change


def _token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Session:
    """One browser's session; ``changed`` says the cookie must be written again."""

    csrf: str = field(default_factory=_token)
    username: str | None = None
    epoch: str | None = None  # the user's session epoch when they signed in
    flashes: list[str] = field(default_factory=list)
    changed: bool = False

    def sign_in(self, username: str, epoch: str) -> None:
        """A new CSRF token with every sign-in (no token survives from before it)."""
        self.username, self.epoch, self.csrf, self.changed = username, epoch, _token(), True

    def sign_out(self) -> None:
        self.username, self.epoch, self.csrf, self.flashes = None, None, _token(), []
        self.changed = True

    def flash(self, message: str) -> None:
        """A message for the next page shown (after a redirect)."""
        self.flashes.append(message)
        self.changed = True

    def take_flashes(self) -> list[str]:
        shown, self.flashes = self.flashes, []
        self.changed = self.changed or bool(shown)
        return shown

    def csrf_matches(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token.encode(), self.csrf.encode())


class SessionCodec:
    """Sessions to and from signed, timestamped cookie values."""

    def __init__(self, key: bytes) -> None:
        self._serializer = URLSafeTimedSerializer(key, salt="recsys-console-session")

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps(
            {"u": session.username, "e": session.epoch, "c": session.csrf,
             "f": session.flashes[-5:]})

    def loads(self, value: str | None) -> Session | None:
        """The session of a cookie; None when absent, tampered with, expired or malformed."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=MAX_AGE_S)
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        if not (isinstance(data, dict) and isinstance(data.get("c"), str)
                and isinstance(data.get("u"), str | None) and isinstance(data.get("e"), str | None)
                and isinstance(data.get("f"), list)):
            return None
        return Session(csrf=data["c"], username=data["u"], epoch=data.get("e"),
                       flashes=[str(m) for m in data["f"]])
