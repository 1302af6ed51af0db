"""Typed training configuration, loadable from a TOML file (`churn train --config FILE`)."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from churn_risk.features.config import FeatureConfig
from churn_risk.models.bundle import DEFAULT_RISK_BANDS
from churn_risk.models.portfolio import MatrixSettings, ValueSettings


@dataclass(frozen=True)
class SearchSpace:
    """Candidate XGBoost settings, tried in order; the smallest model within
    `auc_tolerance` of the best validation AUC wins (explanations cost grows with model size)."""

    max_depth: tuple[int, ...] = (3, 4, 6)
    #: Adoptions are rare: propensity models get shallower candidates.
    propensity_max_depth: tuple[int, ...] = (2, 3)
    learning_rate: float = 0.08
    min_child_weight: float = 5.0
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    num_boost_round: int = 600
    early_stopping_rounds: int = 40
    auc_tolerance: float = 0.002


@dataclass(frozen=True)
class TrainConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    search: SearchSpace = field(default_factory=SearchSpace)
    #: First / last as-of month of the training snapshots (default: all with full windows).
    first_as_of: str | None = None
    last_as_of: str | None = None
    #: Months between a training snapshot and the validation snapshot, and between validation
    #: and test (default: the label horizon, so no training label sees the validation period).
    gap_months: int | None = None
    #: Use monotone constraints from the feature specs (risk never falls as problems grow).
    monotone: bool = True
    propensity: bool = True
    #: A family needs this many adopters in training to get a propensity model.
    min_positives: int = 30
    risk_bands: tuple[tuple[str, float], ...] = DEFAULT_RISK_BANDS
    #: Value model: depth of the spend regressor; margin rate, discounting, lifetime.
    value_max_depth: int = 4
    value: ValueSettings = field(default_factory=ValueSettings)
    #: Risk-matrix thresholds (quantiles of the newest scored snapshot, or absolute).
    matrix: MatrixSettings = field(default_factory=MatrixSettings)
    #: Next-best-action catalogue (TOML); None: the packaged `models/actions.toml`.
    actions: str | None = None
    #: An offer's measured success rate needs this many control customers.
    min_control: int = 100
    #: Holdout share of customers when the data are too short for a time split.
    holdout_share: float = 0.2
    seed: int = 42
    nthread: int = 2

    def as_params(self) -> dict[str, str]:
        """Every setting as a flat MLflow parameter."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}{k}.", v)
            else:
                flat[prefix[:-1]] = str(value)

        walk("", asdict(self))
        return flat


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a TOML file with optional [features], [search], [value] and [matrix] tables and
    top-level keys."""
    if path is None:
        return TrainConfig()
    raw = tomllib.loads(Path(path).read_text())
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown settings {sorted(unknown)}; known: {sorted(known)}")
    kwargs = dict(raw)
    if "features" in raw:
        kwargs["features"] = FeatureConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in raw["features"].items()}
        )
    if "search" in raw:
        kwargs["search"] = SearchSpace(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in raw["search"].items()}
        )
    if "value" in raw:
        kwargs["value"] = ValueSettings(**raw["value"])
    if "matrix" in raw:
        kwargs["matrix"] = MatrixSettings(**raw["matrix"])
    if "risk_bands" in raw:
        kwargs["risk_bands"] = tuple((str(n), float(x)) for n, x in raw["risk_bands"])
    return TrainConfig(**kwargs)
