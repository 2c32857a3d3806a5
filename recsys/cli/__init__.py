"""The `recsys` command line, one module per command group: ``data`` (generate-demo, ingest,
run, mine-rules, export-rules), ``analysis`` (evaluate, clv, report), ``artifacts``, ``serve``
(serve, users, demo). Exit codes: 0 ok, 1 bad input or config, 2 internal error."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable, Sequence

from recsys.cli import analysis, artifacts, data, exports, serve
from recsys.cli.common import DEFAULT_CONFIG
from recsys.errors import RecsysError

__all__ = ["main", "job_main", "build_parser"]

log = logging.getLogger("recsys")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys", description="Recommendation and cross-sell engine for online shops.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str,
            config: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        if config:
            p.add_argument("--config", metavar="FILE",
                           help=f"config file (default: {DEFAULT_CONFIG} if present, else built-in)")
        return p

    for group in (data, analysis, exports, artifacts, serve):  # the order `recsys --help` lists them
        group.register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from recsys.progress import set_quiet

    set_quiet(args.quiet)
    try:
        return int(args.func(args))
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`)
        sys.stderr.close()
        return 0
    except Exception as exc:  # noqa: BLE001 - the last line of defence: exit 2, no traceback
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"error: no space left on the device ({exc}); free some space and run "
                  "again (an artifact version is published whole or not at all)",
                  file=sys.stderr)
            return 1
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return 2


def job_main(command: str, argv: Sequence[str]) -> int:
    """Run one command with the global flags (-q, --debug) accepted anywhere (jobs/ scripts)."""
    flags = [a for a in argv if a in ("-q", "--quiet", "--debug")]
    rest = [a for a in argv if a not in flags]
    return main([*flags, command, *rest])
