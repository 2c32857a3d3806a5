"""The console session: a signed cookie (itsdangerous) holding the user name, a CSRF token
and pending flash messages; nothing is kept on the server.

The signing key is derived from the admin API key, which every worker shares and production
requires to be set (a changed key signs everyone out).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

__all__ = ["COOKIE", "MAX_AGE_S", "Session", "SessionCodec", "session_key"]

COOKIE = "recsys_console"
MAX_AGE_S = 12 * 3600  # a session ends 12 hours after its last change


def session_key(api_key: str) -> bytes:
    """The cookie signing key: an HMAC of the API key, so the key itself never signs."""
    return hmac.new(api_key.encode(), b"recsys console session", hashlib.sha256).digest()


def _token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class Session:
    """One browser's session; ``changed`` says the cookie must be written again."""

    csrf: str = field(default_factory=_token)
    username: str | None = None
    flashes: list[str] = field(default_factory=list)
    changed: bool = False

    def sign_in(self, username: str) -> None:
        """A new CSRF token with every sign-in (no token survives from before it)."""
        self.username, self.csrf, self.changed = username, _token(), True

    def sign_out(self) -> None:
        self.username, self.csrf, self.flashes, self.changed = None, _token(), [], True

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
            {"u": session.username, "c": session.csrf, "f": session.flashes[-5:]})

    def loads(self, value: str | None) -> Session | None:
        """The session of a cookie; None when absent, tampered with, expired or malformed."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=MAX_AGE_S)
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        if not (isinstance(data, dict) and isinstance(data.get("c"), str)
                and isinstance(data.get("u"), str | None) and isinstance(data.get("f"), list)):
            return None
        return Session(csrf=data["c"], username=data["u"],
                       flashes=[str(m) for m in data["f"]])
