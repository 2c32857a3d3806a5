"""The secret that signs console sessions (issue #14, point 3): ``[serving] session_secret``
when set, else a random one generated at first start and kept in a file (mode 0600) that every
worker reads, so no server ever signs sessions with a known key.

The file is ``session_secret_file`` when set, else beside the SQLite database
(``recsys.db.session-secret``), else (another database) ``session-secret`` in the artifact
store's root. It is created atomically: written whole under a temporary name, then linked to
its name, which fails if another worker got there first; that worker's secret is read back.
Deleting the file (and restarting) signs everyone out.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from recsys.config import MIN_PRODUCTION_KEY, ServingSettings
from recsys.errors import ConfigError
from recsys.filemodes import PRIVATE_FILE

__all__ = ["SUFFIX", "secret_path", "session_secret"]

log = logging.getLogger("recsys.console")
SUFFIX = ".session-secret"


def secret_path(settings: ServingSettings) -> Path:
    """Where the generated secret is kept for these settings."""
    if settings.session_secret_file:
        return Path(settings.session_secret_file)
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        url = None
    database = str(url.database or "") if url is not None else ""
    if (url is not None and url.drivername.startswith("sqlite")
            and database not in ("", ":memory:") and not database.startswith("file:")):
        path = Path(database)
        return path.with_name(path.name + SUFFIX)
    return Path(settings.artifacts) / SUFFIX.lstrip(".")


def session_secret(settings: ServingSettings) -> bytes:
    """The configured secret, else the kept one (generated now if there is none yet)."""
    if settings.session_secret:
        return settings.session_secret.encode()
    path = secret_path(settings)
    try:
        if not path.exists():
            _create(path)
        if path.stat().st_mode & 0o077:
            log.error("%s (the console's session secret) may be read by others: chmod 600 it",
                      path)
        value = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"console session secret {path}: {exc}; set session_secret_file "
                          "to a writable place, or session_secret") from None
    if len(value) < MIN_PRODUCTION_KEY:
        raise ConfigError(f"console session secret {path} holds {len(value)} characters, "
                          f"not at least {MIN_PRODUCTION_KEY}: delete it to have one generated")
    return value.encode()


def _create(path: Path) -> None:
    """Write a new secret to ``path`` unless another process wrote one first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)  # atomic, and refuses an existing name
        log.warning("generated the console's session secret in %s (mode 0600)", path)
    except FileExistsError:
        pass  # another worker's secret is the one
    finally:
        temporary.unlink(missing_ok=True)
