"""Typed configuration of the feature pipeline (the feature set)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class FeatureConfig:
    """What the lifecycle feature set computes; its name and values go into every MLflow run."""

    #: Trailing windows (days) for recency/frequency/monetary features: [as_of - w, as_of).
    windows: tuple[int, ...] = (30, 90, 180, 365)
    #: Window (days) for the short-term service, delivery, contact and product-change features.
    recent_days: int = 90
    #: Window (days) for slow signals: resolution times, repeat problems, returns, campaigns.
    history_days: int = 365
    #: Label horizon: churn / adoption is observed in [as_of, as_of + horizon_days).
    horizon_days: int = 90
    #: A family counts as held when bought within this many days before as_of.
    lookback_days: int = 365
    #: A campaign's `responded` flag is only believed once this many days have passed since it.
    response_window_days: int = 30
    #: The transactions table already holds the subscription invoices: the value model's
    #: target then leaves `subscriptions.recurring_amount` out (else it would count them twice).
    invoices_in_transactions: bool = False

    name: str = "lifecycle_v1"

    def __post_init__(self) -> None:
        if not self.windows or any(w <= 0 for w in self.windows):
            raise ValueError(f"windows must be positive day counts, got {self.windows}")
        for field_name in (
            "recent_days",
            "history_days",
            "horizon_days",
            "lookback_days",
            "response_window_days",
        ):
            if getattr(self, field_name) <= 0:
                raise ValueError(f"{field_name} must be a positive number of days")

    def as_params(self) -> dict[str, str]:
        """Flat string parameters for MLflow (`feature_set.*`)."""
        return {f"feature_set.{k}": str(v) for k, v in asdict(self).items()}
