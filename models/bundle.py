"""What a trained model *is*: the bundle that MLflow logs and batch scoring and serving load.

A `ChurnBundle` holds the calibrated churn model, one propensity model per product family, the
feature specs (names, labels, driver groups, order), the category levels of categorical
features and the explanation logic. Everything that turns a feature frame into scores and
reasons lives here, so training and serving can never disagree.

Explanations are XGBoost's native TreeSHAP (`pred_contribs`) of the churn model, in log-odds:
`base_value + sum(contributions) == margin`, and `churn_probability == calibrate(margin)`.
Contributions are also summed per driver group, the business vocabulary reasons are shown in.

The bundle also carries the value model (an XGBoost regressor of the net spend over the horizon
of a retained customer) and the portfolio policy (`portfolio.py`: lifetime value, the value ×
risk matrix and the next-best-action catalogue with its success rates), so a customer's value,
quadrant and recommended action are the same in batch scoring, worklists and the service.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from scipy.special import expit

from churn_risk.errors import UsageError
from churn_risk.features.config import FeatureConfig
from churn_risk.features.lifecycle import FeatureSpec
from churn_risk.features.target import Target
from churn_risk.models.portfolio import PortfolioPolicy

# Scoring no rows is normal (an event about a former customer re-scores nobody); XGBoost warns
# about it on every call, which would fill the service's log.
warnings.filterwarnings("ignore", message=r".*Empty dataset at worker", category=UserWarning)

#: 2: the bundle states its target (`target` in bundle.json) and its customer holdout.
BUNDLE_FORMAT = 2
HOLDOUT_FILE = "holdout.parquet"
DEFAULT_RISK_BANDS: tuple[tuple[str, float], ...] = (
    ("low", 0.0),
    ("medium", 0.05),
    ("high", 0.15),
    ("very_high", 0.30),
)
#: The band from which a customer is "high risk" everywhere: the API's `risk_band` and the risk
#: matrix's high-risk column (`portfolio.PortfolioPolicy.risk_threshold`), so no chart or quadrant
#: calls a customer high risk at another threshold than the API.
HIGH_RISK_BAND = "high"


def high_risk_from(risk_bands: tuple[tuple[str, float], ...]) -> float:
    """The lower edge of the `HIGH_RISK_BAND` of `risk_bands`: the risk matrix's split."""
    for name, low in risk_bands:
        if name == HIGH_RISK_BAND:
            return float(low)
    raise ValueError(f"risk_bands {[name for name, _ in risk_bands]} have no "
                     f"{HIGH_RISK_BAND!r} band, the risk matrix's high-risk split")


#: The logistic function, from margins to probabilities: SciPy's (no overflow warnings at large
#: margins). The one sigmoid of the project (the demo generator and the page charts use it too).
sigmoid = expit


@dataclass(frozen=True)
class Calibrator:
    """Maps the churn model's margin to a calibrated probability.

    `isotonic`: piecewise-linear interpolation through (raw probability, calibrated) knots.
    `platt`: sigmoid(a * margin + b).
    """

    method: str
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=float)
        if self.method == "isotonic":
            return np.interp(sigmoid(margin), self.x, self.y)
        if self.method == "platt":
            return sigmoid(self.a * margin + self.b)
        if self.method == "none":
            return sigmoid(margin)
        raise ValueError(f"unknown calibration method {self.method!r}")

    def to_dict(self) -> dict:
        return {"method": self.method, "x": list(self.x), "y": list(self.y), "a": self.a,
                "b": self.b}

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        return cls(d["method"], tuple(d.get("x", ())), tuple(d.get("y", ())), d.get("a", 1.0),
                   d.get("b", 0.0))


def encode_features(
    specs: list[FeatureSpec], categories: dict[str, list[str]], frame: pd.DataFrame
) -> pd.DataFrame:
    """The model input: features in training order, categoricals with the training levels
    (an unseen level becomes missing). Raises KeyError naming missing features."""
    missing = [s.name for s in specs if s.name not in frame.columns]
    if missing:
        raise KeyError(f"missing features: {', '.join(missing)}")
    columns = {}
    for spec in specs:
        values = frame[spec.name]
        if spec.kind == "categorical":
            levels = categories[spec.name]
            known = values.isin(levels)  # an unseen level is unknown to the model: missing
            columns[spec.name] = pd.Categorical(
                values.astype(object).where(known, None), categories=levels
            )
        else:
            columns[spec.name] = pd.to_numeric(values, errors="coerce").astype("float64")
    return pd.DataFrame(columns, index=frame.index)


@dataclass(frozen=True)
class Explanation:
    """TreeSHAP of the churn model for a batch, in log-odds."""

    base_value: float
    contributions: pd.DataFrame  # one column per feature, rows aligned with the input
    groups: pd.DataFrame  # one column per driver group: the sum of its features' contributions
    margin: np.ndarray  # base_value + contributions.sum(axis=1)


@dataclass
class ChurnBundle:
    specs: list[FeatureSpec]
    categories: dict[str, list[str]]
    churn: xgb.Booster
    calibrator: Calibrator
    #: What the churn probability is a probability of (stated with every output).
    target: Target
    propensity: dict[str, xgb.Booster] = field(default_factory=dict)
    risk_bands: tuple[tuple[str, float], ...] = DEFAULT_RISK_BANDS
    info: dict = field(default_factory=dict)  # feature set, training window, ... (metadata)
    #: Net spend over the horizon if retained (None: no transactions to learn it from).
    value: xgb.Booster | None = None
    policy: PortfolioPolicy = field(default_factory=PortfolioPolicy)
    #: customer_id, side: the customer-level holdout of training (None for a time split), so
    #: promotion never judges a model on customers it was fitted on.
    holdout: pd.DataFrame | None = None
    #: Per numeric feature, the [min, max] seen in training: a what-if value outside it is scored
    #: but flagged (the model never saw such a value).
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    # ---------------------------------------------------------------- inputs

    @property
    def feature_names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def feature_config(self) -> FeatureConfig:
        """The feature set the model was trained on: serving and scoring rebuild it exactly."""
        return FeatureConfig.model_validate(self.info.get("feature_config", {}))

    def test_customers(self) -> pd.Index | None:
        """The customers held out for test at training (None: the split was by time)."""
        if self.holdout is None:
            return None
        return pd.Index(self.holdout.loc[self.holdout["side"] == "test", "customer_id"])

    @property
    def families(self) -> list[str]:
        return sorted(self.propensity)

    def spec(self, name: str) -> FeatureSpec:
        return self._spec_index[name]

    @property
    def _spec_index(self) -> dict[str, FeatureSpec]:
        index = self.__dict__.get("_spec_cache")
        if index is None:
            index = {s.name: s for s in self.specs}
            self.__dict__["_spec_cache"] = index
        return index

    def matrix(self, frame: pd.DataFrame) -> pd.DataFrame:
        return encode_features(self.specs, self.categories, frame)

    def dmatrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        """The model input as a DMatrix built from one float array (categoricals as the codes
        of their training levels): ~10x cheaper than from a DataFrame for a few rows, and the
        same splits, as a test holds."""
        return xgb.DMatrix(
            self.array(frame), feature_names=self.feature_names,
            feature_types=self._feature_types, enable_categorical=True, nthread=1,
        )

    @property
    def _feature_types(self) -> list[str]:
        return ["c" if s.kind == "categorical" else "float" for s in self.specs]

    def array(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [n for n in self.feature_names if n not in frame.columns]
        if missing:
            raise KeyError(f"missing features: {', '.join(missing)}")
        out = np.empty((len(frame), len(self.specs)), dtype=np.float64)
        numeric = [i for i, s in enumerate(self.specs) if s.kind != "categorical"]
        names = self.feature_names
        out[:, numeric] = frame[[names[i] for i in numeric]].astype("float64").to_numpy()
        for i, spec in enumerate(self.specs):
            if spec.kind == "categorical":
                codes = pd.Index(self.categories[spec.name]).get_indexer(
                    frame[spec.name].astype(object)
                )
                out[:, i] = np.where(codes >= 0, codes, np.nan)
        return out

    # ---------------------------------------------------------------- scores

    def churn_margin(self, dm: xgb.DMatrix) -> np.ndarray:
        return self.churn.predict(dm, output_margin=True, validate_features=False)

    def risk_band(self, probability: np.ndarray) -> np.ndarray:
        names = np.array([name for name, _ in self.risk_bands], dtype=object)
        lower = np.array([low for _, low in self.risk_bands])
        return names[np.searchsorted(lower, probability, side="right") - 1]

    def predict(self, frame: pd.DataFrame, dm: xgb.DMatrix | None = None) -> pd.DataFrame:
        """Scores per row: calibrated churn probability, risk band, value (`horizon_margin`,
        `lifetime_value`, `value_at_risk`), the risk-matrix `quadrant`, and one propensity per
        product family (`propensity_<family>`)."""
        dm = self.dmatrix(frame) if dm is None else dm
        probability = self.calibrator(self.churn_margin(dm))
        out = {"churn_probability": probability, "risk_band": self.risk_band(probability)}
        out.update(self.value_columns(probability, dm))
        for family in self.families:
            out[f"propensity_{family}"] = self.propensity[family].predict(
                dm, validate_features=False
            )
        return pd.DataFrame(out, index=frame.index)

    def value_columns(self, probability: np.ndarray, dm: xgb.DMatrix) -> dict[str, np.ndarray]:
        if self.value is None:
            nan = np.full(len(probability), np.nan)
            return {"horizon_margin": nan, "lifetime_value": nan, "value_at_risk": nan,
                    "quadrant": np.full(len(probability), None, dtype=object)}
        margin = self.policy.horizon_margin(self.value.predict(dm, validate_features=False))
        lifetime = self.policy.lifetime_value(margin)
        return {
            "horizon_margin": margin,
            "lifetime_value": lifetime,
            "value_at_risk": probability * lifetime,
            "quadrant": self.policy.quadrant(probability, lifetime),
        }

    def recommend(self, scores: pd.DataFrame, groups: pd.DataFrame,
                  policy: PortfolioPolicy | None = None, require_profit: bool = True
                  ) -> pd.DataFrame:
        """The next-best action per row of `predict`'s output (see `portfolio.py`), from the
        driver-group contributions (`Explanation.groups`), by the bundle's policy or `policy`
        (e.g. one channel's actions); without a value model only growth actions can pay."""
        return (policy or self.policy).recommend(
            scores["churn_probability"].to_numpy(),
            np.nan_to_num(scores["lifetime_value"].to_numpy(dtype=float)),
            np.nan_to_num(scores["horizon_margin"].to_numpy(dtype=float)),
            groups,
            self._propensity_frame(scores),
            require_profit=require_profit,
        ).set_axis(scores.index)

    def _propensity_frame(self, scores: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({f: scores[f"propensity_{f}"].to_numpy() for f in self.families},
                            index=scores.index)

    def score(self, frame: pd.DataFrame, top_k: int = 3) -> pd.DataFrame:
        """Every output field per row, flat (batch scoring's table): `predict`'s columns, the
        recommended action and its expected profit, the `top_k` reasons raising risk
        (`reason_<i>_feature`, `_group`, `_contribution`), the next products and the SHAP
        contribution of each driver group (`group_<name>`). One model input, one TreeSHAP pass."""
        dm = self.dmatrix(frame)
        scores = self.predict(frame, dm)
        explanation = self.explain(frame, dm)
        out = [scores, self.recommend(scores, explanation.groups)]
        out.append(self.reason_columns(explanation, top_k))
        out.append(self.next_product_columns(scores, min(3, len(self.families))))
        out.append(explanation.groups.add_prefix("group_"))
        return pd.concat([o.set_axis(frame.index) for o in out], axis=1)

    def reason_columns(self, explanation: Explanation, top_k: int) -> pd.DataFrame:
        """The `top_k` features raising risk most per row, vectorised (a feature that lowers
        risk is left out: its columns are empty)."""
        values = explanation.contributions.to_numpy()
        n, m = values.shape
        k = min(top_k, m)
        out: dict[str, np.ndarray] = {}
        if k == 0 or n == 0:
            return pd.DataFrame(index=explanation.contributions.index)
        top = np.argpartition(-values, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(values, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        picked = np.take_along_axis(values, top, axis=1)
        names = np.array(self.feature_names, dtype=object)
        groups = np.array([s.group for s in self.specs], dtype=object)
        for i in range(k):
            raises = picked[:, i] > 0
            out[f"reason_{i + 1}_feature"] = np.where(raises, names[top[:, i]], None)
            out[f"reason_{i + 1}_group"] = np.where(raises, groups[top[:, i]], None)
            out[f"reason_{i + 1}_contribution"] = np.where(raises, picked[:, i], np.nan)
        return pd.DataFrame(out, index=explanation.contributions.index)

    def next_product_columns(self, scores: pd.DataFrame, top_k: int) -> pd.DataFrame:
        if top_k == 0:
            return pd.DataFrame(index=scores.index)
        values = self._propensity_frame(scores).to_numpy()
        order = np.argsort(-values, axis=1, kind="stable")[:, :top_k]
        families = np.array(self.families, dtype=object)
        out = {}
        for i in range(top_k):
            out[f"next_product_{i + 1}"] = families[order[:, i]]
            out[f"next_product_{i + 1}_propensity"] = values[np.arange(len(values)), order[:, i]]
        return pd.DataFrame(out, index=scores.index)

    # ---------------------------------------------------------------- reasons

    def explain(self, frame: pd.DataFrame, dm: xgb.DMatrix | None = None) -> Explanation:
        dm = self.dmatrix(frame) if dm is None else dm
        contribs = self.churn.predict(dm, pred_contribs=True, validate_features=False)
        contribs = contribs.reshape(len(frame), len(self.feature_names) + 1)  # 0 rows: 1-d
        base = float(contribs[0, -1]) if len(contribs) else float(self.info.get("base_value", 0))
        contributions = pd.DataFrame(contribs[:, :-1], columns=self.feature_names,
                                     index=frame.index)
        return Explanation(
            base_value=base,
            contributions=contributions,
            groups=self.group_contributions(contributions),
            margin=contribs.sum(axis=1),
        )

    def predict_and_explain(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, Explanation]:
        """Both, from one model input (what serving does for inline records)."""
        dm = self.dmatrix(frame)
        return self.predict(frame, dm), self.explain(frame, dm)

    def group_contributions(self, contributions: pd.DataFrame) -> pd.DataFrame:
        groups = list(dict.fromkeys(s.group for s in self.specs))
        membership = np.zeros((len(self.specs), len(groups)))
        for i, spec in enumerate(self.specs):
            membership[i, groups.index(spec.group)] = 1.0
        return pd.DataFrame(contributions.to_numpy() @ membership, columns=groups,
                            index=contributions.index)

    def top_reasons(self, frame: pd.DataFrame, explanation: Explanation, top_k: int = 5
                    ) -> list[list[dict]]:
        """Per row, the `top_k` features pushing risk up the most (then down, if fewer push
        up), with their driver group, label, the customer's value and the contribution."""
        values = explanation.contributions.to_numpy()
        names = self.feature_names
        out = []
        for i, (_, row) in enumerate(frame.iterrows()):
            order = np.argsort(-values[i], kind="stable")[:top_k]
            reasons = []
            for j in order:
                spec = self._spec_index[names[j]]
                value = row[spec.name]
                reasons.append({
                    "feature": spec.name,
                    "label": spec.label,
                    "driver_group": spec.group,
                    "value": None if pd.isna(value) else (
                        value if isinstance(value, str) else float(value)
                    ),
                    "contribution": float(values[i, j]),
                    "direction": "raises_risk" if values[i, j] > 0 else "lowers_risk",
                    "actionable": spec.actionable,
                })
            out.append(reasons)
        return out

    # ---------------------------------------------------------------- persistence

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.churn.save_model(folder / "churn.ubj")
        if self.value is not None:
            self.value.save_model(folder / "value.ubj")
        for family, booster in self.propensity.items():
            booster.save_model(folder / f"propensity_{family}.ubj")
        meta = {
            "format": BUNDLE_FORMAT,
            "specs": [asdict(spec) for spec in self.specs],
            "categories": self.categories,
            "calibrator": self.calibrator.to_dict(),
            "target": self.target.model_dump(mode="json"),
            "families": self.families,
            "risk_bands": [list(b) for b in self.risk_bands],
            "info": self.info,
            "value_model": self.value is not None,
            "policy": self.policy.to_dict(),
            "ranges": {k: list(v) for k, v in self.ranges.items()},
        }
        (folder / "bundle.json").write_text(json.dumps(meta, indent=2, default=str))
        if self.holdout is not None:
            self.holdout.to_parquet(folder / HOLDOUT_FILE, index=False)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ChurnBundle:
        folder = Path(folder)
        meta = json.loads((folder / "bundle.json").read_text())
        if meta.get("format") != BUNDLE_FORMAT:
            raise UsageError(
                f"this model was saved by another version of churn-risk (bundle format "
                f"{meta.get('format')!r}, this one reads {BUNDLE_FORMAT}); format 1 did not record "
                "what its probabilities are of (its target): retrain it with `churn train`")
        holdout = folder / HOLDOUT_FILE

        def booster(path: Path) -> xgb.Booster:
            b = xgb.Booster()
            b.load_model(path)
            b.set_param({"nthread": 1})
            return b

        return cls(
            specs=[FeatureSpec(**{**s, "bounds": tuple(s.get("bounds", (None, None)))})
                   for s in meta["specs"]],
            categories=meta["categories"],
            churn=booster(folder / "churn.ubj"),
            calibrator=Calibrator.from_dict(meta["calibrator"]),
            target=Target.model_validate(meta["target"]),
            propensity={f: booster(folder / f"propensity_{f}.ubj") for f in meta["families"]},
            risk_bands=tuple((name, float(low)) for name, low in meta["risk_bands"]),
            info=meta["info"],
            value=booster(folder / "value.ubj") if meta.get("value_model") else None,
            policy=_matrix_on_bands(PortfolioPolicy.from_dict(meta.get("policy", {})),
                                    meta["risk_bands"]),
            holdout=pd.read_parquet(holdout) if holdout.exists() else None,
            ranges={k: (float(lo), float(hi)) for k, (lo, hi) in meta.get("ranges", {}).items()},
        )


def _matrix_on_bands(policy: PortfolioPolicy, risk_bands: list) -> PortfolioPolicy:
    """`policy` with its risk split on the `high` band: models trained before the split was the
    band's kept a quantile of their own, which would give quadrants the API's bands contradict.
    Bands without a `high` band (a custom set) keep the stored split."""
    try:
        split = high_risk_from(tuple((name, float(low)) for name, low in risk_bands))
    except ValueError:
        return policy
    return replace(policy, risk_threshold=split)
