"""Progress bars and log lines on the same console."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from recsys import progress
from recsys.progress import bars_enabled, progress_bar, progress_enabled, set_quiet


@contextmanager
def console_log() -> Iterator[None]:
    """The root logger writing to stderr (pytest's capture of this phase), as the CLI's
    ``basicConfig``; made inside the test: a fixture's stderr is another phase's."""
    root, level = logging.getLogger(), logging.getLogger().level
    handler = logging.StreamHandler(sys.stderr)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def bars_on() -> Iterator[None]:
    """Progress bars drawn (an in-process ``recsys -q`` of an earlier test turns them off for
    the process), then as they were."""
    quiet = not progress_enabled()
    set_quiet(False)
    yield
    set_quiet(quiet)


@pytest.mark.usefixtures("bars_on")
def test_a_log_line_during_a_bar_gets_its_own_line(capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: the bar is drawn
    with console_log():
        for i in progress_bar(range(3), desc="counting", total=3):
            if i == 1:
                logging.getLogger("recsys.test").info("step two starts")
        # the console handler is the plain one again after the bar
        assert [type(h) for h in logging.getLogger().handlers].count(logging.StreamHandler) == 1
    err = capsys.readouterr().err
    assert "counting" in err  # the bar was drawn
    # the bar is cleared for it, not written into ("...it/s]step two starts")
    assert "\rstep two starts\n" in err and "]step two starts" not in err
    assert "Logging error" not in err


@pytest.mark.usefixtures("bars_on")
def test_quiet_draws_no_bar(capsys: pytest.CaptureFixture[str]) -> None:
    set_quiet(True)
    with console_log():
        assert list(progress_bar(range(3), desc="counting")) == [0, 1, 2]
    assert "counting" not in capsys.readouterr().err


@pytest.mark.usefixtures("bars_on")
def test_without_a_terminal_progress_is_log_lines(capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A log file gets whole lines, no bar redrawn with carriage returns."""
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # a line after every item
    assert not sys.stderr.isatty()
    with console_log():
        assert list(progress_bar(range(3), desc="counting", unit="orders", total=3)) == [0, 1, 2]
        assert list(progress_bar(iter("ab"), desc="reading")) == ["a", "b"]
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("counting: 1 of 3 orders (33%), ")
    assert lines[2].startswith("counting: 3 of 3 orders (100%), ")
    assert lines[4].startswith("reading: 2 it, ") and len(lines) == 5


@pytest.mark.usefixtures("bars_on")
def test_library_bars_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """implicit's own bars (its fits) draw on a terminal, never into a log file or under -q."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not bars_enabled()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert bars_enabled()
    set_quiet(True)
    assert not bars_enabled()
