"""The merchandiser console served under ``/console``: sign-in, rules browser, product pages,
decisions with undo, audit log, exports. ``create_console(state)`` builds the mounted app."""

from recsys.console.web import create_console

__all__ = ["create_console"]
