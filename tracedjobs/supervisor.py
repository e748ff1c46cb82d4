"""One error policy for every loop of a worker.

* The database is out of reach (connection refused, server restarting, pool timeout):
  back off and try again; log one line when it goes, one when it comes back.
* Anything else (a refused query, a bug): log it with its traceback, back off, restart the
  loop. Repeats of the same error are logged once.
* Never let a loop's failure cancel anything else: running jobs go on, and the worker's
  shutdown (unregistering included) still happens.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import anyio

from tracedjobs.connector import first_line, is_connection_error

logger = logging.getLogger("tracedjobs.worker")

MIN_BACKOFF = 0.5
MAX_BACKOFF = 10.0


class Health:
    """The state of one loop, for the "log once per state change" rule."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        self._last_error: str | None = None
        self._backoff = 0.0

    def failed(self, exc: BaseException) -> float:
        """Log the failure as the policy says; returns how long to wait before retrying."""
        self.failures += 1
        if is_connection_error(exc):
            error = f"database unreachable ({first_line(exc)})"
            if error != self._last_error:
                logger.warning(
                    "%s: %s; retrying with back-off",
                    self.name,
                    error,
                    extra={"action": "database_unreachable", "loop": self.name},
                )
        else:
            error = f"{type(exc).__name__}: {first_line(exc)}"
            if error != self._last_error:
                logger.error(
                    "%s failed (%s); restarting it with back-off (running jobs go on)",
                    self.name,
                    error,
                    exc_info=exc,
                    extra={"action": "side_task_failed", "loop": self.name},
                )
            else:
                logger.debug("%s failed again (%s)", self.name, error)
        self._last_error = error
        self._backoff = min(max(self._backoff * 2, MIN_BACKOFF), MAX_BACKOFF)
        # Jitter, so that workers cut off together do not come back in lockstep.
        return self._backoff * random.uniform(0.8, 1.2)

    def ok(self) -> None:
        if self.failures:
            logger.warning(
                "%s recovered after %d failed attempt(s)",
                self.name,
                self.failures,
                extra={"action": "recovered", "loop": self.name},
            )
        self.failures = 0
        self._last_error = None
        self._backoff = 0.0


async def every(
    name: str,
    interval: float | Callable[[], float],
    step: Callable[[], Awaitable[None]],
    *,
    first: float | None = None,
) -> None:
    """Run ``step`` every ``interval`` seconds forever, under the policy."""
    health = Health(name)
    delay = (interval() if callable(interval) else interval) if first is None else first
    while True:
        await anyio.sleep(delay)
        try:
            await step()
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            delay = health.failed(exc)
            continue
        health.ok()
        delay = interval() if callable(interval) else interval


async def forever(name: str, body: Callable[[Health], Awaitable[None]]) -> None:
    """Run a long-lived ``body`` (e.g. LISTEN), restarting it under the policy. The body
    calls ``health.ok()`` once it is up again."""
    health = Health(name)
    while True:
        try:
            await body(health)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            await anyio.sleep(health.failed(exc))
        else:
            return
