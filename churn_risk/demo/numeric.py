"""Small numeric helpers of the simulation: link functions, AR(1) steps, event-chunk arithmetic.

Events are kept as *chunks*: one dict of equally long numpy arrays per simulated month (customer
index ``cust`` plus the event's fields), concatenated when a window of months is read or when the
tables are built.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit as sigmoid  # noqa: F401 - the project's one sigmoid (models.bundle)

from churn_risk.demo.coefficients import AR1

Chunk = dict[str, np.ndarray]



def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def ar1(rng: np.random.Generator, x: np.ndarray, mean: np.ndarray, process: AR1) -> np.ndarray:
    """One AR(1) step of `x` around `mean`."""
    return mean + process.rho * (x - mean) + process.sd * rng.standard_normal(x.size)


def stationary(rng: np.random.Generator, mean: np.ndarray, process: AR1) -> np.ndarray:
    """A draw from the stationary distribution of the AR(1) process around `mean`."""
    return mean + process.sd / math.sqrt(1.0 - process.rho**2) * rng.standard_normal(mean.size)


def count(idx: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Events (or their summed `weights`) per customer, as floats of length `n`."""
    return np.bincount(idx, weights=weights, minlength=n).astype(float)


def concat(parts: list[Chunk]) -> Chunk:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def select(chunk: Chunk, mask: np.ndarray) -> Chunk:
    return {k: v[mask] for k, v in chunk.items()}


def window(chunks: list[Chunk], first: int, stop: int) -> Chunk | None:
    """The events of months ``first .. stop - 1`` (months before the start: none), or None."""
    parts = chunks[max(first, 0) : max(stop, 0)]
    if not parts:
        return None
    return concat(parts)


def days_in(rng: np.random.Generator, c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A uniform day in ``[lo, hi)`` of each customer `c`."""
    return lo[c] + np.floor(rng.random(c.size) * (hi[c] - lo[c])).astype(np.int64)


def pick(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One column index per row of `weights` (rows of probabilities), by inverse CDF."""
    choice = (rng.random(weights.shape[0])[:, None] > np.cumsum(weights, axis=1)).sum(axis=1)
    return np.minimum(choice, weights.shape[1] - 1)
