"""Load a TOML file into a pydantic model, with the file named in every error (the config and
the column-mapping files both go through here)."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from recsys.errors import ConfigError

__all__ = ["load_toml_model", "format_validation_error"]

M = TypeVar("M", bound=BaseModel)


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """One line per problem: ``key.path: what is wrong``."""
    parts = []
    for err in exc.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{prefix}{where}: {msg}" if where else msg)
    return "; ".join(parts)


def load_toml_model(path: Path | str, model: type[M], what: str, *,
                    describe: Callable[[ValidationError], str] = format_validation_error) -> M:
    """``model`` validated from the TOML file at ``path``; ConfigError naming the file when it
    is missing (``what``: "config file", "mapping file"), not TOML, or not valid."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe(exc)}") from None
