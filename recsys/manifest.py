"""The manifest of an artifact version (``manifest.json``): what it holds and how it was
made, and the canonical JSON and hashes it is written with."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError, ConfigError

__all__ = ["Manifest", "MANIFEST_NAME", "config_hash", "canonical_json", "git_commit",
           "library_versions"]

MANIFEST_NAME = "manifest.json"
_LIBRARIES = ("recsys", "numpy", "pandas", "scipy", "pyarrow", "implicit", "mlxtend", "fastapi")


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``config`` (sorted keys, no spaces): same config, same hash."""
    return hashlib.sha256(canonical_json(config, "config", ConfigError).encode()).hexdigest()


def canonical_json(obj: Any, what: str, error: type[Exception]) -> str:
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise error(
            f"{what} cannot be written as JSON ({exc}); use str/int/float/bool/None, "
            "lists and dicts with string keys, and no NaN or infinity"
        ) from exc


@functools.cache
def git_commit() -> str | None:
    """HEAD of the git checkout holding this package's source, else None; never raises."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


@functools.cache
def library_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in _LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


@dataclass(frozen=True)
class Manifest:
    """What a version holds and how it was made; written as ``manifest.json`` in the version.

    ``files`` maps each relative path (POSIX separators) to {"sha256": hex, "bytes": int}.
    Treat the dict fields as read-only.
    """

    version: str
    created_at: str
    git_commit: str | None
    config: dict[str, Any]
    config_hash: str
    inputs: dict[str, Any]
    libraries: dict[str, str]
    metrics: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready deep copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Build from a parsed manifest.json; ArtifactError on a missing or mistyped field."""
        kinds: dict[str, tuple[type, ...]] = {
            "version": (str,),
            "created_at": (str,),
            "git_commit": (str, type(None)),
            "config": (dict,),
            "config_hash": (str,),
            "inputs": (dict,),
            "libraries": (dict,),
            "metrics": (dict,),
            "files": (dict,),
        }
        if not isinstance(data, dict):
            raise ArtifactError(f"manifest must be a JSON object, got {type(data).__name__}")
        for key, types in kinds.items():
            if key not in data:
                raise ArtifactError(f"manifest lacks the field {key!r}")
            if not isinstance(data[key], types):
                raise ArtifactError(
                    f"manifest field {key!r} has type {type(data[key]).__name__}, "
                    f"expected {' or '.join(t.__name__ for t in types)}"
                )
        for rel, entry in data["files"].items():
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)
            ):
                raise ArtifactError(f"manifest entry for file {rel!r} lacks sha256/bytes")
        return cls(**{key: data[key] for key in kinds})
