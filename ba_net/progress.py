"""Progress of long work (an epoch, a download, a prediction run): :func:`hms` formats a duration,
:class:`Progress` says when the next line is due and what its rate and ETA are. The lines
themselves are logged by the caller, in its own words, through :mod:`logging`."""
from __future__ import annotations

import time


def hms(seconds: float) -> str:
    """``H:MM:SS`` of a duration in seconds (rounded to the second)."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """``total`` units of work from now: a line is :meth:`due` every ``every`` seconds and at the
    end (never when not ``enabled``, e.g. on ranks other than 0)."""

    def __init__(self, total: int, every: float, enabled: bool = True):
        self.total, self.every, self.enabled = total, every, enabled
        self.start = self.last = time.monotonic()

    def due(self, done: int) -> bool:
        now = time.monotonic()
        if not self.enabled or (now - self.last < self.every and done < self.total):
            return False
        self.last = now
        return True

    def elapsed(self) -> float:
        return max(time.monotonic() - self.start, 1e-9)

    def rate(self, amount: float) -> float:
        """``amount`` (images, bytes, ...) per second since the start."""
        return amount / self.elapsed()

    def eta(self, done: int) -> str:
        """The time left at the pace so far, as :func:`hms`."""
        return hms(self.elapsed() / max(done, 1) * (self.total - done))


__all__ = ["Progress", "hms"]
