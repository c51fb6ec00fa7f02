"""Rate limits: one token bucket per identity (a key, or a client address without one).

A bucket refills at the role's rate (requests per second) and holds ``burst_seconds`` of
it; a request takes one token or is refused with the seconds until the next token, which
the service sends as ``Retry-After`` (rounded up, at least 1).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Token buckets by identity, at most ``max_identities`` kept (least recent dropped)."""

    def __init__(
        self,
        *,
        burst_seconds: float = 2.0,
        max_identities: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst_seconds = burst_seconds
        self.max_identities = max_identities
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, identity: str, rate: float) -> int | None:
        """Take a token for ``identity`` at ``rate`` per second: None if allowed, else the
        whole seconds to wait."""
        capacity = max(1.0, rate * self.burst_seconds)
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(identity, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[identity] = (tokens - 1.0, now)
                wait = None
            else:
                self._buckets[identity] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / rate))
            while len(self._buckets) > self.max_identities:
                self._buckets.popitem(last=False)
        return wait
