"""Secrets never leave the process: redaction of configs, manifests and messages.

A value is secret when its key names one (``api_key``, ``password``, ``*secret*``,
``*token*``, any ``*key*``) or when it is a URL with a password (``scheme://user:PW@host``).
Redaction is by field, so everything else of a config stays readable in a manifest; the
manifest keeps the hash of the full config for provenance (``Config.hash``).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REDACTED", "is_secret_key", "redact", "redact_text"]

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(r"key|secret|password|passwd|token|credential", re.IGNORECASE)
# scheme://user:password@host: the password runs to the last '@' before the path
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^\s/]+)@")


def is_secret_key(name: str) -> bool:
    """True for a field name that holds a secret (``api_key``, ``db_password``, ``token``)."""
    return bool(_SECRET_KEY.search(name))


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``[redacted]``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}@", text)


def redact(value: Any, key: str = "", *, secret: bool = False) -> Any:
    """A deep copy of a JSON-like value with secret fields and URL passwords redacted.

    Keys of dicts are kept; every value under a secret field (nested ones too) becomes
    ``[redacted]``; None stays None, so a reader still sees whether one was set.
    """
    secret = secret or (bool(key) and is_secret_key(key))
    if isinstance(value, dict):
        return {k: redact(v, str(k), secret=secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secret=secret) for v in value]
    if value is None:
        return None
    if secret:
        return REDACTED
    return redact_text(value) if isinstance(value, str) else value
