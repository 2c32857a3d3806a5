"""Commands around the server: serve, users (console accounts) and demo (generate the demo
shop, run the pipeline on it and serve it)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.cli.common import DEFAULT_CONFIG, DEMO_CONFIG, AddCommand, load_config_arg
from recsys.errors import InputError, RecsysError
from recsys.filemodes import private_sqlite

if TYPE_CHECKING:
    from recsys.config import ServingSettings
    from recsys.serving.store import ServingStore

__all__ = ["register", "demo_user"]


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise RecsysError(f"cannot serve on {host}:{port}: {exc.strerror}; is another "
                              "server running? stop it or pass --port") from None


def _serve(settings: ServingSettings, quiet: bool) -> int:
    import uvicorn

    _check_port_free(settings.host, settings.port)
    private_sqlite(settings.database_url)
    for key, value in settings.model_dump(mode="json").items():  # workers read the environment
        os.environ[f"RECSYS_SERVING_{key.upper()}"] = (
            json.dumps(value) if isinstance(value, list | dict) else str(value))
    from recsys.serving.logs import uvicorn_log_config

    metrics_dir = None
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # the values of an earlier run must go
        for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
            stale.unlink()
    elif settings.workers > 1:
        # each worker keeps its Prometheus values in files here; /metrics adds them up
        metrics_dir = tempfile.mkdtemp(prefix="recsys-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if settings.workers > 1:  # after the environment is set: the modules read it on import
        from recsys.cli.prefork import fork_workers_from_here

        fork_workers_from_here(settings)
    try:
        # Loading a large index holds the GIL for seconds at a time: with uvicorn's default
        # worker health check (5 s) the supervisor would kill workers while they load.
        uvicorn.run("recsys.app:app_from_env", factory=True, host=settings.host,
                    port=settings.port, workers=settings.workers,
                    timeout_worker_healthcheck=600, access_log=False,  # ours: recsys.access
                    log_config=uvicorn_log_config("WARNING" if quiet else "INFO"))
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = load_config_arg(args).serving_settings(
        artifacts=args.artifacts, host=args.host, port=args.port, workers=args.workers)
    return _serve(settings, args.quiet)


def _new_password(from_stdin: bool) -> str:
    """The first line of stdin, or typed twice at a terminal (never a command-line argument)."""
    import getpass

    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise InputError("no terminal to ask for the password on; pipe it in with "
                         "--password-stdin")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise InputError("the two passwords differ; nothing was changed")
    return password


def cmd_users(args: argparse.Namespace) -> int:
    """Console users, in the server's database (database_url of the config)."""
    from recsys.console.passwords import hash_password
    from recsys.serving.store import ServingStore

    database_url = load_config_arg(args).serving_settings().database_url
    private_sqlite(database_url)
    store = ServingStore(database_url)
    try:
        if args.action == "list":
            users = store.list_users()
            if not users:
                print("no console users yet; add one with: recsys users add NAME --role editor")
            for user in users:
                print(f"{user['username']}  {user['role']}  created "
                      f"{user['created_at']:%Y-%m-%d %H:%M}"
                      + ("  disabled" if user["disabled"] else ""))
            return 0
        if args.action == "add":
            password_hash = hash_password(_new_password(args.password_stdin))
            try:
                store.add_user(args.name, password_hash, args.role)
            except ValueError as exc:
                raise InputError(f"users add: {exc}") from None
            print(f"user {args.name} ({args.role}) created; they sign in at /console/login")
            return 0
        return _change_user(store, args)
    finally:
        store.dispose()


def _change_user(store: ServingStore, args: argparse.Namespace) -> int:
    """remove, reset-password, disable, enable: each ends the user's sessions at once."""
    from recsys.console.passwords import hash_password

    name = args.name
    if args.action == "reset-password":
        done = store.set_password(name, hash_password(_new_password(args.password_stdin)))
        what = "has a new password; their sessions ended"
    elif args.action == "remove":
        done, what = store.remove_user(name), "removed; their sessions ended"
    else:
        done = store.set_disabled(name, args.action == "disable")
        what = ("disabled: sessions ended, sign-in refused" if args.action == "disable"
                else "enabled: they can sign in again")
    if not done:
        raise InputError(f"users {args.action}: no user {name!r} (see recsys users list)")
    print(f"user {name} {what}")
    return 0


def _example_product(artifacts_root: str) -> str:
    """The antecedent of the strongest rule of the current version, for the example request."""
    from recsys import layout
    from recsys.artifacts import ArtifactStore, load_parquet

    rules_path = layout.RULES.at(ArtifactStore(artifacts_root).path())
    if rules_path.exists():
        rules = load_parquet(rules_path)
        pairs = rules[rules["antecedents"].list.len() == 1]
        if len(pairs):
            return str(pairs.sort_values("count", ascending=False)["antecedents"].iloc[0][0])
    return "P00001"


def demo_user(database_url: str) -> str:
    """The demo console editor ``demo`` with a fresh random password (printed by the demo)."""
    import secrets

    from recsys.console.passwords import hash_password
    from recsys.serving.store import ServingStore

    password = secrets.token_urlsafe(12)
    private_sqlite(database_url)
    store = ServingStore(database_url)
    try:
        if not store.set_password("demo", hash_password(password)):
            store.add_user("demo", hash_password(password), "editor")
    finally:
        store.dispose()
    return password


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate the demo shop, run the whole pipeline, publish and serve it."""
    from recsys.config import IngestConfig
    from recsys.demo import DemoSpec, generate_demo
    from recsys.pipeline import run_pipeline

    config = load_config_arg(args, default=DEMO_CONFIG)
    summary = generate_demo(Path(config.demo.out), DemoSpec(orders=config.demo.orders,
                                                            products=config.demo.products,
                                                            seed=config.demo.seed),
                            progress=not args.quiet)
    ingest = IngestConfig(**{t: str(summary.paths[t]) for t in ("orders", "events", "catalog")})
    config = config.model_copy(update={"ingest": ingest})  # the shop just generated
    report, manifest = run_pipeline(config, show_progress=not args.quiet)
    print(report.summary())
    print(f"published artifact version {manifest.version}")
    if args.no_serve:
        print(f"serve it with: recsys serve --config {args.config or DEMO_CONFIG}")
        return 0
    settings = config.serving_settings(port=args.port)
    _check_port_free(settings.host, settings.port)
    base = f"http://{settings.host}:{settings.port}"
    product = _example_product(config.artifacts.root)
    shop = f"  storefront: {base}/storefront/\n" if settings.storefront else ""
    password = demo_user(settings.database_url)
    print(f"\nServing on {base}\n{shop}  console:    {base}/console/ (user demo, password "
          f"{password})\n  API docs:   {base}/docs\n  health:     {base}/healthz\n"
          f"  readiness:  {base}/readyz\n  version:    {base}/v1/version\n"
          f"Example requests:\n"
          f"  curl '{base}/v1/items/{product}/bought-together?k=5'\n"
          f"  curl -X POST '{base}/v1/cart/add-ons?k=5' -H 'Content-Type: application/json' "
          f"-d '{{\"items\": [{{\"product_id\": \"{product}\", \"quantity\": 1}}]}}'\n"
          f"  curl '{base}/v1/popular?k=5'\n(Ctrl-C stops the server)\n", flush=True)
    return _serve(settings, args.quiet)


def register(add: AddCommand) -> None:
    """Declare this module's commands."""
    p = add("serve", cmd_serve, "serve the current artifact over HTTP", config=True)
    p.add_argument("--artifacts", metavar="DIR")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)

    p = add("users", cmd_users, "console users: add, list, remove, reset-password, disable, "
                                "enable")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    users_add = actions.add_parser("add", help="create a user (the password is asked for)")
    users_add.add_argument("name", metavar="NAME")
    users_add.add_argument("--role", default="viewer", metavar="{viewer,editor}",
                           help="viewers browse and export; editors also decide "
                                "(default: viewer)")
    users_add.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of stdin (scripts)")
    users_list = actions.add_parser("list", help="list the users and their roles")
    leaves = [users_add, users_list]
    for action, text in (("remove", "delete a user"),
                         ("reset-password", "set a new password (asked for)"),
                         ("disable", "refuse their sign-in"), ("enable", "allow it again")):
        leaf = actions.add_parser(action, help=f"{text}; ends the user's sessions")
        leaf.add_argument("name", metavar="NAME")
        if action == "reset-password":
            leaf.add_argument("--password-stdin", action="store_true",
                              help="read the password from the first line of stdin (scripts)")
        leaves.append(leaf)
    for leaf in leaves:
        leaf.add_argument("--config", metavar="FILE", help=f"config file (default: "
                          f"{DEFAULT_CONFIG} if present, else built-in)")

    p = add("demo", cmd_demo, "generate the demo shop, run the pipeline and serve it")
    p.add_argument("--config", metavar="FILE",
                   help=f"config file (default: {DEMO_CONFIG} if present, else built-in)")
    p.add_argument("--port", type=int)
    p.add_argument("--no-serve", action="store_true", help="stop after publishing")
