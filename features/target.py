"""The churn definition as a named target: what a probability is a probability *of*.

A `Target` is chosen by the data scientist (`churn train --target ... --horizon-days N`, or
`[target]` in the training config), travels in the model bundle, is logged to MLflow and is
stated with every probability the product gives out ("chance of leaving within 90 days").
Models with different targets are never compared or swapped silently (`churn promote`).

- `labels`: the company's own `labels` table is the definition (its `as_of` dates and
  `churned`); `horizon_days` says which period its flag covers, so it must be given.
- `subscription_end`: no active subscription at the end of the horizon.
- `no_purchase`: no purchase within the horizon.

Who is still a customer (the population that is scored) is a separate rule. With subscriptions a
customer is one while they hold an active subscription. With purchases only, a customer silent
for at least `lapsed_after_days` has lapsed (is a former customer, not scored); anyone quieter
for less is scored. Left unset, it is chosen from the data when training (`labels.py:
suggest_lapsed_after_days`) and stored with the model.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class TargetKind(StrEnum):
    labels = "labels"
    subscription_end = "subscription_end"
    no_purchase = "no_purchase"


_QUALIFIER = {
    TargetKind.labels: "by the company's own churn label",
    TargetKind.subscription_end: "no active subscription at the end",
    TargetKind.no_purchase: "no purchase in that time",
}

#: What each kind needs in the data.
REQUIRED_TABLE = {
    TargetKind.labels: "labels",
    TargetKind.subscription_end: "subscriptions",
    TargetKind.no_purchase: "transactions",
}


class Target(BaseModel):
    """The churn definition of a model (see the module doc)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: TargetKind
    horizon_days: int = Field(default=90, gt=0, le=3660)
    #: Purchases only: a customer silent for at least this many days is a former customer.
    lapsed_after_days: int | None = Field(default=None, gt=0, le=36600)

    @property
    def period(self) -> str:
        """The horizon in words: "90 days", "273 days, about 9 months"."""
        days = self.horizon_days
        months = days / (365.25 / 12)
        if days >= 150 and abs(months - round(months)) < 0.15:
            return f"{days} days, about {round(months)} months"
        return f"{days} days"

    @property
    def description(self) -> str:
        """e.g. "chance of leaving within 90 days (no purchase in that time)"."""
        return f"chance of leaving within {self.period} ({_QUALIFIER[self.kind]})"

    def as_dict(self) -> dict:
        """The `target` object of every output: kind, horizon_days, lapsed_after_days,
        description."""
        return {"kind": self.kind.value, "horizon_days": self.horizon_days,
                "lapsed_after_days": self.lapsed_after_days, "description": self.description}

    def as_params(self) -> dict[str, str]:
        return {f"target.{k}": str(v) for k, v in self.as_dict().items() if k != "description"}

    def same_definition(self, other: Target) -> bool:
        """Whether two models predict the same thing (kind and horizon): only then may their
        metrics be compared."""
        return self.kind == other.kind and self.horizon_days == other.horizon_days

    def __str__(self) -> str:
        return f"{self.kind.value}, {self.horizon_days} days"
