"""The merchandiser console served under ``/console``: sign-in, rules browser, product pages,
decisions with undo, audit log, exports. The app keeps one ``Console`` in
``app.state.console`` and includes ``router`` (see ``recsys.app``)."""

from recsys.console.pages import router
from recsys.console.site import Console

__all__ = ["Console", "router"]
