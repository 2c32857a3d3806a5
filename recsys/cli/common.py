"""What every command shares: the config file a command reads, and the ``add`` helper that
declares a command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recsys.config import Config

__all__ = ["DEFAULT_CONFIG", "DEMO_CONFIG", "AddCommand", "load_config_arg"]

DEFAULT_CONFIG = "configs/recsys.toml"
DEMO_CONFIG = "configs/demo.toml"  # `recsys demo` (and `make demo`)

#: ``add(name, func, help, config=False) -> subparser``: declares one command.
AddCommand = Callable[..., argparse.ArgumentParser]


def load_config_arg(args: argparse.Namespace, default: str = DEFAULT_CONFIG) -> Config:
    """The config of ``--config`` (else ``default`` if present, else the built-in one)."""
    from recsys.config import load_config

    path = args.config
    if path is None and Path(default).exists():
        path = default
    return load_config(path)
