"""The artifacts command (list, show, verify or roll back artifact versions) and forget
(erase customers from every place the engine keeps them)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsys.cli.common import AddCommand, load_config_arg
from recsys.errors import ArtifactError

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
            mark = "*" if v == current else " "
            try:
                m = store.manifest(v)
            except ArtifactError as exc:  # one bad version must not hide the others
                print(f"{mark} {v}  unreadable: {exc}")
                continue
            print(f"{mark} {v}  created {m.created_at}  files {len(m.files)}  "
                  f"config {m.config_hash[:12]}")
    elif args.action == "show":
        from recsys.redact import redact  # manifests written before redaction hold secrets

        print(json.dumps(redact(store.manifest(args.version).to_dict()), indent=2,
                         sort_keys=True))
    elif args.action == "verify":
        from recsys.artifact_checks import check_version

        m = store.verify(args.version)
        check_version(store.path(m.version))
        print(f"version {m.version}: all {len(m.files)} files match their checksums and pass "
              "the structural checks")
    elif args.action == "rollback":
        from recsys.artifact_checks import check_loads

        version = store.rollback(args.version, check=lambda v: check_loads(root, v))
        print(f"CURRENT now points at {version}")
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    """Erase customers everywhere the engine keeps them (recsys/forget.py)."""
    from recsys.artifacts import ArtifactStore
    from recsys.forget import forget_customers
    from recsys.serving.live import RedisLive

    config = load_config_arg(args)
    settings = config.serving_settings()
    live = RedisLive(settings, settings.redis_url) if settings.redis_url else None
    try:
        erasure = forget_customers(
            args.customer_ids, database_url=settings.database_url,
            data_dir=Path(config.data_dir), store=ArtifactStore(
                config.artifacts.root, keep_last=config.artifacts.keep_last),
            access_logs=[Path(p) for p in args.access_log],
            live=live.forget if live is not None else None)
    finally:
        if live is not None:
            live.close()
    print(json.dumps(erasure.to_dict(), indent=2))
    return 0


def register(add: AddCommand) -> None:
    """Declare this module's commands."""
    p = add("artifacts", cmd_artifacts, "list, show, verify or roll back artifact versions",
            config=True)
    p.add_argument("--root", metavar="DIR", help="artifact store (default: from the config)")
    p.add_argument("action", choices=["list", "show", "verify", "rollback"])
    p.add_argument("version", nargs="?", help="a version (default: current; rollback: previous)")

    p = add("forget", cmd_forget, "erase customers (GDPR art. 17): live session lists (Redis), "
            "events, data directory, every artifact version, access logs; recorded without ids",
            config=True)
    p.add_argument("customer_ids", nargs="+", metavar="CUSTOMER_ID")
    p.add_argument("--access-log", action="append", default=[], metavar="FILE",
                   help="a server log file to remove the customers' lines from (repeatable)")
