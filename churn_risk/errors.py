"""Expected failures: what a user did or what their data cannot do, as opposed to bugs.

Every `churn` command catches `ChurnError` in one place (`cli.main`) and prints its message (what
is wrong and what to change) with no traceback, then exits with the class's code:

| code | meaning |
|---|---|
| 0 | done |
| 1 | the data cannot do what was asked: they break the contract, hold too little history for the
      horizon, or give zero rows or a single class after labelling |
| 2 | usage: a bad option or config file, no such model or champion, an unreachable tracking store,
      a data source that cannot be read |
| 3 | `churn promote` refused the challenger (worse, or a different target): nothing changed |
| 4 | `churn monitor`: retraining is due (drift or a realised-accuracy drop; the verdict says why) |
| 130 | interrupted |

The service answers the same failures with a 4xx (see `serving/`).
"""

from __future__ import annotations


class ChurnError(Exception):
    """An expected failure with a message for the person who ran the command."""

    exit_code = 2


class UsageError(ChurnError, ValueError):
    """A bad option, setting or file given by the user."""

    exit_code = 2


class DataError(ChurnError, ValueError):
    """The data cannot support what was asked (history, rows, classes)."""

    exit_code = 1


class PromotionRefused(ChurnError):
    """`churn promote` left the champion alone."""

    exit_code = 3


def first_line(exc: BaseException) -> str:
    """An exception as one short line for a message or a log (no traceback, no payload)."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
