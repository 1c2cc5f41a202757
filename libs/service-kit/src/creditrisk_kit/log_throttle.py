"""Rate-limited logging: at most ``burst`` lines per key and interval, then one summary line.

The scheme of the Linux kernel's ``printk_ratelimit`` (``___ratelimit``: a burst of messages per
interval, then "N callbacks suppressed"), per key: a flood of one kind of
event (a client hammering with bad keys) costs at most ``burst`` lines per ``interval_s``, plus
one line saying how many were left out, while other keys keep their own budget. The caller
counts every event in its metric; only the log lines are limited.

::

    throttle = LogThrottle(burst=10, interval_s=60.0)
    decision = throttle.admit(("unauthenticated", "unknown API key"))
    for key, suppressed in decision.summaries:
        logger.warning("suppressed %d ... for %s", suppressed, key)
    if decision.log:
        logger.warning(...)

Thread-safe. Memory is bounded: at most ``max_keys`` keys are tracked; a new key beyond them
shares the budget of :data:`OVERFLOW_KEY`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

DEFAULT_BURST = 10
"""Lines per key and interval (the kernel's ``DEFAULT_RATELIMIT_BURST``)."""
DEFAULT_INTERVAL_S = 60.0
"""The interval, in seconds (the kernel uses 5 s for console lines; a log pipeline bills per line,
and one summary a minute per key still shows a flood going on)."""
DEFAULT_MAX_KEYS = 1000
"""Keys tracked at once; more share :data:`OVERFLOW_KEY`."""

OVERFLOW_KEY: Hashable = ("*", "*")
"""The key of events whose own key could not be tracked (``max_keys`` reached)."""


@dataclass(frozen=True)
class Decision:
    """What :meth:`LogThrottle.admit` decided for one event.

    Attributes:
        log: True: log this event; False: it is counted as suppressed.
        summaries: ``(key, suppressed)`` of every window that ended with suppressed events (this
            key's previous one, and other keys' whose interval passed): log one summary each,
            before the event.
    """

    log: bool
    summaries: tuple[tuple[Hashable, int], ...] = ()


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: int = 0


@dataclass
class LogThrottle:
    """Per-key log budget (module docstring).

    Args:
        burst: Lines logged per key within one interval (>= 1).
        interval_s: Length of a key's window, in seconds (> 0); a window starts at its key's first
            event after the previous window ended.
        max_keys: Keys tracked at once (>= 1); beyond, events go to :data:`OVERFLOW_KEY`.
        clock: Monotonic seconds (tests pass a fake).

    Raises:
        ValueError: A bound out of range.
    """

    burst: int = DEFAULT_BURST
    interval_s: float = DEFAULT_INTERVAL_S
    max_keys: int = DEFAULT_MAX_KEYS
    clock: Callable[[], float] = time.monotonic
    _windows: dict[Hashable, _Window] = field(default_factory=dict, init=False, repr=False)
    _next_sweep: float = field(default=0.0, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")
        if not self.interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {self.interval_s}")
        if self.max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, got {self.max_keys}")

    def admit(self, key: Hashable) -> Decision:
        """Record one event of ``key`` and say whether to log it.

        Returns:
            The :class:`Decision`: log or not, and the summaries of windows that ended.
        """
        now = self.clock()
        with self._lock:
            summaries = self._sweep(now) if now >= self._next_sweep else []
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) >= self.max_keys:
                    key = OVERFLOW_KEY
                    window = self._windows.get(key)
                if window is None:
                    window = self._windows[key] = _Window(now)
            elif now - window.started >= self.interval_s:
                if window.suppressed:
                    summaries.append((key, window.suppressed))
                window.started, window.logged, window.suppressed = now, 0, 0
            if window.logged < self.burst:
                window.logged += 1
                return Decision(True, tuple(summaries))
            window.suppressed += 1
            return Decision(False, tuple(summaries))

    def reset(self) -> None:
        """Forget every window: each key has its whole budget again (tests; summaries dropped)."""
        with self._lock:
            self._windows.clear()
            self._next_sweep = 0.0

    def _sweep(self, now: float) -> list[tuple[Hashable, int]]:
        """Drop the windows whose interval passed; the summaries of those that suppressed."""
        self._next_sweep = now + min(self.interval_s, 1.0)
        ended = [key for key, window in self._windows.items() if now - window.started >= self.interval_s]
        summaries = []
        for key in ended:
            window = self._windows.pop(key)
            if window.suppressed:
                summaries.append((key, window.suppressed))
        return summaries
