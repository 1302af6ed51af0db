"""Typed configuration of the feature pipeline (the feature set).

Settings are pydantic models with `extra="forbid"`: a mistyped key in a TOML file is an error
naming it, never silently ignored, and `max_depth = "3"` is refused rather than kept as text.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Strict, immutable, unknown keys refused: the base of every settings model.
SETTINGS = ConfigDict(frozen=True, extra="forbid", strict=True)


class FeatureConfig(BaseModel):
    """What the lifecycle feature set computes; its name and values go into every MLflow run."""

    model_config = SETTINGS

    #: Trailing windows (days) for recency/frequency/monetary features: [as_of - w, as_of).
    windows: tuple[int, ...] = (30, 90, 180, 365)
    #: Window (days) for the short-term service, delivery, contact and product-change features.
    recent_days: int = Field(90, gt=0)
    #: Window (days) for slow signals: resolution times, repeat problems, returns, campaigns.
    history_days: int = Field(365, gt=0)
    #: A family counts as held when bought within this many days before as_of.
    lookback_days: int = Field(365, gt=0)
    #: A campaign's `responded` flag is only believed once this many days have passed since it.
    response_window_days: int = Field(30, gt=0)
    #: The transactions table already holds the subscription invoices: the value model's
    #: target then leaves `subscriptions.recurring_amount` out (else it would count them twice).
    invoices_in_transactions: bool = False

    name: str = "lifecycle_v2"

    @field_validator("windows", mode="before")
    @classmethod
    def _windows(cls, value):
        values = tuple(value) if isinstance(value, list | tuple) else value
        if not values or any(not isinstance(w, int) or w <= 0 for w in values):
            raise ValueError("windows must be positive whole numbers of days, e.g. [30, 90]")
        return values

    def as_params(self) -> dict[str, str]:
        """Flat string parameters for MLflow (`feature_set.*`)."""
        return {f"feature_set.{k}": str(v) for k, v in self.model_dump().items()}
