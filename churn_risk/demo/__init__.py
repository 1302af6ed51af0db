"""Demo CRM data with a known, documented churn mechanism (the `churn demo` data set).

`generate` simulates a subscription business month by month and returns the nine CRM tables of
the data contract (`features/contract.py`) plus the *ground truth* a real CRM never has: every
customer's true monthly churn hazard, its 90-day churn probability, the log-odds contribution of
each driver group, true next-product adoption probabilities and the true effect of each retention
campaign. The truth lets the models be checked against the mechanism that made the data, not only
against realised labels. `write_demo` writes both, the truth to ``<out>/ground_truth/`` with a
README rendered from the coefficients the code uses.

Time is counted in days from `start`; month ``m`` is ``[start + m months, start + m + 1 months)``
and every event of the tables falls in ``[start, start + months)``.

The package, one job per module:

- `coefficients`: every parameter and coefficient of the mechanism (the only place numbers live)
- `catalog`: the catalogue, product mixes, volumes and interaction kinds as numpy lookups
- `state`: the calendar, the customers, the month-to-month state and the per-month context
- `population`: customer attributes, holdings (subscriptions, drops, joiners), latent states
- `hazard`: the trailing window, churn hazard, adoption probabilities and expected spend
- `events`: one month's purchases, returns, deliveries, tickets, interactions and surveys
- `campaigns`: retention campaigns, their randomisation and true effect
- `simulation`: `generate`, the month loop tying the parts together
- `tables`, `truth`: the CRM tables and the ground-truth frames
- `readme`, ``templates/README.md``: the ground-truth README; `io`: `write_demo`
"""

from __future__ import annotations

from churn_risk.demo.coefficients import (
    ADOPTION_FAMILIES,
    DOMINANT_DRIVERS,
    AdoptionCoefficients,
    HazardCoefficients,
)
from churn_risk.demo.io import write_demo
from churn_risk.demo.readme import truth_readme
from churn_risk.demo.simulation import DemoData, Progress, generate

__all__ = [
    "ADOPTION_FAMILIES",
    "DOMINANT_DRIVERS",
    "AdoptionCoefficients",
    "DemoData",
    "HazardCoefficients",
    "Progress",
    "generate",
    "truth_readme",
    "write_demo",
]
