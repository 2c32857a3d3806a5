"""Sign-in throttling with a hand-driven clock."""

from __future__ import annotations

from recsys.console.throttle import SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_user_name_locks_after_its_failures_until_the_window_passes() -> None:
    clock = Clock()
    throttle = SignInThrottle(per_user=3, per_address=10, window_s=60, clock=clock)
    for _ in range(2):
        throttle.failed("10.0.0.1", "Edna")
        clock.now += 1
    assert throttle.wait_s("10.0.0.1", "edna") == 0  # two failures: may still try
    throttle.failed("10.0.0.1", "EDNA")  # names compare case-insensitively
    assert throttle.wait_s("10.0.0.1", "edna") == 60
    assert throttle.wait_s("10.0.0.2", "edna") == 0  # another address
    assert throttle.wait_s("10.0.0.1", "vic") == 0  # another name
    clock.now += 30
    assert throttle.wait_s("10.0.0.1", "edna") == 30
    clock.now += 30
    assert throttle.wait_s("10.0.0.1", "edna") == 0  # the oldest failure left the window


def test_an_address_locks_after_failures_over_many_names() -> None:
    clock = Clock()
    throttle = SignInThrottle(per_user=3, per_address=4, window_s=60, clock=clock)
    for name in ("a", "b", "c", "d"):
        throttle.failed("10.0.0.1", name)
    assert throttle.wait_s("10.0.0.1", "e") == 60
    assert throttle.wait_s("10.0.0.9", "e") == 0


def test_a_successful_sign_in_clears_the_names_failures() -> None:
    clock = Clock()
    throttle = SignInThrottle(per_user=2, per_address=10, window_s=60, clock=clock)
    throttle.failed("10.0.0.1", "edna")
    throttle.succeeded("10.0.0.1", "edna")
    throttle.failed("10.0.0.1", "edna")
    assert throttle.wait_s("10.0.0.1", "edna") == 0
