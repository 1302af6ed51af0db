"""A request's deadline, checked by long loops so a request that runs out of time stops its work.

The HTTP layer sets the deadline when a request starts (`start`); the scorer calls `check()` as
it goes, which raises `DeadlineExceeded` once the time is up. Context variables follow the
request into the worker thread that computes its answer, so no code passes it around.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("churn_deadline", default=None)


class DeadlineExceeded(TimeoutError):
    """The request ran out of time; its work stops here."""


def start(seconds: float) -> None:
    _deadline.set(time.monotonic() + seconds)


def check() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded("the request ran out of time")
