"""The project's exception types; the CLI maps them to exit codes (1 bad input/config, 2 internal)."""

from __future__ import annotations

__all__ = ["RecsysError", "InputError", "ConfigError", "ArtifactError", "UnknownIdError"]


class RecsysError(Exception):
    """Base class: an error the user can act on. Its message says what, where and what to do."""

    exit_code = 1


class InputError(RecsysError):
    """Input data cannot be read or does not meet the data contract (file, row, column named)."""


class ConfigError(RecsysError):
    """A configuration or mapping file has a bad key or value."""


class ArtifactError(RecsysError):
    """An artifact version is missing, incomplete or fails its checksums."""


class UnknownIdError(RecsysError, KeyError):
    """External ids that a vocabulary does not know, under the 'error' policy."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""
