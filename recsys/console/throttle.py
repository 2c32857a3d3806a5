"""Sign-in throttling: after too many failed sign-ins from one address, for one user name or
for any, that address waits before it may try again (and its passwords are not even checked,
so guessing costs no argon2 time either). Kept in memory, per worker process."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["SignInThrottle"]


class SignInThrottle:
    """``per_user`` failures for one (address, user name), or ``per_address`` for one address
    whatever the names, within ``window_s`` seconds lock that address out for ``window_s``
    seconds after its latest failure. A successful sign-in clears the user name's count."""

    def __init__(self, *, per_user: int = 5, per_address: int = 30, window_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_user, self.per_address, self.window_s = per_user, per_address, window_s
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, address: str, username: str) -> int:
        """Seconds this address must wait before trying ``username`` (0: it may try now)."""
        with self._lock:
            now = self._clock()
            waits = [self._wait(key, limit, now) for key, limit in self._keys(address, username)]
        return max(waits)

    def failed(self, address: str, username: str) -> None:
        with self._lock:
            now = self._clock()
            for key, _ in self._keys(address, username):
                self._failures.setdefault(key, deque()).append(now)
            if len(self._failures) > 100_000:  # bound the memory an attacker can take
                self._forget_older_than(now - self.window_s)

    def succeeded(self, address: str, username: str) -> None:
        with self._lock:
            self._failures.pop((address, username.casefold()), None)

    def _keys(self, address: str, username: str) -> list[tuple[tuple[str, str], int]]:
        return [((address, username.casefold()), self.per_user), ((address, ""), self.per_address)]

    def _wait(self, key: tuple[str, str], limit: int, now: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) < limit:
            return 0
        return max(1, math.ceil(times[-1] + self.window_s - now))

    def _forget_older_than(self, cutoff: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= cutoff]:
            del self._failures[key]
