"""Typed training configuration, loadable from a TOML file (`churn train --config FILE`).

Every table and key is checked (pydantic, `extra="forbid"`, strict types): a mistyped key or a
value of the wrong type is a short error naming the file, the key and what is expected.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from churn_risk.errors import UsageError
from churn_risk.features.config import SETTINGS, FeatureConfig
from churn_risk.features.target import TargetKind
from churn_risk.models.bundle import DEFAULT_RISK_BANDS, high_risk_from
from churn_risk.models.portfolio import MatrixSettings, ValueSettings, settings_error

#: Keys that moved, so an old config gets a pointer instead of a bare "unknown setting".
MOVED = {"features.horizon_days": "target.horizon_days",
         # the matrix's risk split is the API's: the `high` risk band's lower edge
         "matrix.risk_quantile": "risk_bands (the 'high' band's lower edge)",
         "matrix.risk_threshold": "risk_bands (the 'high' band's lower edge)"}


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


class SearchSpace(BaseModel):
    """Candidate XGBoost settings, tried in order; the smallest model within
    `auc_tolerance` of the best validation AUC wins (explanations cost grows with model size)."""

    model_config = SETTINGS

    max_depth: tuple[int, ...] = (3, 4, 6)
    #: Adoptions are rare: propensity models get shallower candidates.
    propensity_max_depth: tuple[int, ...] = (2, 3)
    learning_rate: float = Field(0.08, gt=0, le=1)
    min_child_weight: float = Field(5.0, ge=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    num_boost_round: int = Field(600, gt=0)
    early_stopping_rounds: int = Field(40, gt=0)
    auc_tolerance: float = Field(0.002, ge=0)

    @field_validator("max_depth", "propensity_max_depth", mode="before")
    @classmethod
    def _lists(cls, value):
        return _tuple(value)


class TargetSettings(BaseModel):
    """The `[target]` table: the churn definition (see `features/target.py`). Unset values are
    decided from the data at training (the kind, and the lapse rule)."""

    model_config = SETTINGS

    kind: TargetKind | None = None
    horizon_days: int | None = Field(None, gt=0, le=3660)
    lapsed_after_days: int | None = Field(None, gt=0, le=36600)

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value):
        if isinstance(value, str):
            try:
                return TargetKind(value)
            except ValueError:
                raise ValueError(f"use one of {', '.join(k.value for k in TargetKind)}") from None
        return value


class TrainConfig(BaseModel):
    model_config = SETTINGS

    features: FeatureConfig = FeatureConfig()
    target: TargetSettings = TargetSettings()
    search: SearchSpace = SearchSpace()
    #: First / last as-of date of the training snapshots (default: all with full windows).
    first_as_of: str | None = None
    last_as_of: str | None = None
    #: Months between a training snapshot and the validation snapshot, and between validation
    #: and test (default: the label horizon, so no training label sees the validation period).
    gap_months: int | None = Field(None, ge=0)
    #: Use monotone constraints from the feature specs (risk never falls as problems grow).
    monotone: bool = True
    propensity: bool = True
    #: Draw and log the evaluation figures and the SHAP analysis (about 5 s per training); off
    #: for quick iterations, whose runs then hold metrics and tables only.
    figures: bool = True
    #: A family needs this many adopters in training to get a propensity model.
    min_positives: int = Field(30, ge=1)
    risk_bands: tuple[tuple[str, float], ...] = DEFAULT_RISK_BANDS
    #: Value model: depth of the spend regressor; margin rate, discounting, lifetime.
    value_max_depth: int = Field(4, ge=1, le=12)
    value: ValueSettings = ValueSettings()
    #: Risk-matrix value split (a quantile of the newest scored snapshot, or absolute); the
    #: risk split is the `high` risk band's lower edge.
    matrix: MatrixSettings = MatrixSettings()
    #: Next-best-action catalogue (TOML); None: the packaged `models/actions.toml`.
    actions: str | None = None
    #: An offer's measured success rate needs this many control customers.
    min_control: int = Field(100, ge=1)
    #: Share of customers held out for validation and for test when the labels have too few
    #: dates for a time split (one date: the company's labels at a single as_of).
    holdout_share: float = Field(0.2, gt=0, lt=0.5)
    seed: int = 42
    nthread: int = Field(2, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _toml_shapes(cls, data):
        if isinstance(data, dict) and isinstance(data.get("risk_bands"), list):
            data = {**data, "risk_bands": tuple(tuple(b) for b in data["risk_bands"])}
        return data

    @field_validator("risk_bands")
    @classmethod
    def _has_high_band(cls, value):
        high_risk_from(value)  # the risk matrix splits there: a ValueError names the band
        return value

    @field_validator("first_as_of", "last_as_of")
    @classmethod
    def _iso(cls, value):
        from churn_risk.features.dates import parse_day

        if value is not None:
            parse_day(value, "date")
        return value

    def as_params(self) -> dict[str, str]:
        """Every setting as a flat MLflow parameter."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}{k}.", v)
            else:
                flat[prefix[:-1]] = str(value)

        walk("", self.model_dump(mode="json"))
        return flat


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a TOML file with optional [features], [target], [search], [value] and [matrix]
    tables and top-level keys; `UsageError` naming the file and the key when anything is off."""
    if path is None:
        return TrainConfig()
    from churn_risk.features.io import read_toml

    where = str(path)
    raw = read_toml(path, f"--config {where}")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        message = settings_error(exc, where)
        for old, new in MOVED.items():
            message = message.replace(f"{old}: unknown setting", f"{old}: moved to {new}")
        raise UsageError(message) from None
