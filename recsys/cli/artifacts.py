"""The artifacts command: list, show, verify or roll back artifact versions."""

from __future__ import annotations

import argparse
import json

from recsys.cli.common import AddCommand, load_config_arg

__all__ = ["register"]


def cmd_artifacts(args: argparse.Namespace) -> int:
    from recsys.artifacts import ArtifactStore

    root = args.root or load_config_arg(args).artifacts.root
    store = ArtifactStore(root)
    if args.action == "list":
        current = store.current_version()
        versions = store.versions()
        if not versions:
            print(f"no versions in {root}")
        for v in versions:
            m = store.manifest(v)
            mark = "*" if v == current else " "
            print(f"{mark} {v}  created {m.created_at}  files {len(m.files)}  "
                  f"config {m.config_hash[:12]}")
    elif args.action == "show":
        print(json.dumps(store.manifest(args.version).to_dict(), indent=2, sort_keys=True))
    elif args.action == "verify":
        m = store.verify(args.version)
        print(f"version {m.version}: all {len(m.files)} files match their checksums")
    elif args.action == "rollback":
        version = store.rollback(args.version)
        print(f"CURRENT now points at {version}")
    return 0


def register(add: AddCommand) -> None:
    """Declare this module's command."""
    p = add("artifacts", cmd_artifacts, "list, show, verify or roll back artifact versions",
            config=True)
    p.add_argument("--root", metavar="DIR", help="artifact store (default: from the config)")
    p.add_argument("action", choices=["list", "show", "verify", "rollback"])
    p.add_argument("version", nargs="?", help="a version (default: current; rollback: previous)")
