"""Who a campaign helps: a two-model (T-learner) uplift model, evaluated by cross-fitting.

Uplift model
    Where the pooled control groups are large enough, `fit_uplift_model` fits a two-model
    (T-learner) XGBoost on the lifecycle features at the send date (read strictly before it, so
    the campaign itself is not in them): one churn model per group, predicted uplift =
    p_control - p_treatment. It is evaluated on held-out customers (cross-fitting: every row is
    scored by models that never saw its customer) with the Qini coefficient and the observed
    uplift per decile, next to the simple ranking "baseline churn risk x pooled relative churn
    reduction of the campaign's offer". With the few hundred control customers a campaign keeps,
    the realised Qini is noisy: the bootstrap interval of the difference says whether the model
    beats the baseline at all. Customers with a predicted uplift <= 0 are
    labelled "leave alone" (the offer is not expected to help, or hurts), the others
    "persuadable".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb

from churn_risk.features.config import FeatureConfig
from churn_risk.features.lifecycle import (
    FeatureSpec,
    PreparedData,
    build_features,
    feature_specs,
)
from churn_risk.models.bundle import encode_features
from churn_risk.training.campaigns.effects import CampaignEvaluation, group_counts
from churn_risk.training.campaigns.stats import (
    effect,
    mantel_haenszel,
    qini_coefficient,
    qini_curve,
)
from churn_risk.training.fit import category_levels

__all__ = [
    "LEAVE_ALONE",
    "PERSUADABLE",
    "NotEnoughControls",
    "UpliftModel",
    "fit_uplift_model",
]

PERSUADABLE = "persuadable"
LEAVE_ALONE = "leave alone"


class NotEnoughControls(ValueError):
    """Too few control customers for an uplift model (the reason is the message)."""


@dataclass(frozen=True)
class UpliftModel:
    """T-learner: churn models for the treatment and the control group on the lifecycle features
    at the send date; predicted uplift (retention gain) = p_control - p_treatment.

    `holdout`: every compared customer x campaign row with its out-of-fold predictions (see
    `fit_uplift_model`): `uplift`, `baseline` (baseline churn risk x the offer's pooled relative
    churn reduction measured on the fold's training customers), `label` (persuadable / leave
    alone), `group`, `churned`, `fold`. `deciles`: observed
    uplift per decile of each ranking (`ranking` = "uplift_model" | "baseline", decile 1 = highest
    score). `qini`: Qini coefficients of both rankings, their difference and its bootstrap
    interval (customers resampled)."""

    treatment: xgb.Booster
    control: xgb.Booster
    specs: list[FeatureSpec]
    categories: dict[str, list[str]]
    holdout: pd.DataFrame
    deciles: pd.DataFrame
    qini: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    notes: list[str] = field(default_factory=list)

    def predict_uplift(self, frame: pd.DataFrame) -> np.ndarray:
        dm = xgb.DMatrix(encode_features(self.specs, self.categories, frame),
                         enable_categorical=True)
        return self.control.predict(dm) - self.treatment.predict(dm)

    def label(self, frame: pd.DataFrame) -> np.ndarray:
        return np.where(self.predict_uplift(frame) > 0, PERSUADABLE, LEAVE_ALONE)


def fit_uplift_model(
    prep: PreparedData,
    evaluation: CampaignEvaluation,
    cfg: FeatureConfig = FeatureConfig(),
    *,
    min_control: int = 500,
    folds: int = 5,
    max_depth: int = 2,
    max_rounds: int = 400,
    baseline_risk: Callable[[pd.DataFrame], np.ndarray] | None = None,
    bootstrap: int = 500,
    nthread: int = 1,
    seed: int = 42,
) -> UpliftModel:
    """Fit the T-learner on the evaluable campaigns pooled, and evaluate it on held-out customers.

    Evaluation is by cross-fitting over customers (not rows: a customer may be in several
    campaigns): the customers are split at random into `folds` parts and each part is scored by
    models fitted on the others, so every row of `holdout` is predicted by models that never saw
    its customer, and the Qini uses all compared customers rather than one small holdout (the
    control groups of campaigns are small: the Qini of even the true uplift is noisy). The
    returned boosters are then fitted on every row.

    `baseline_risk` maps a feature frame to churn probabilities (e.g. the champion bundle's);
    by default a churn model of the same size is fitted on the training rows of both groups. The
    baseline ranking multiplies it by the pooled relative churn reduction of the row's offer,
    measured on the training customers of the fold (the pooled reduction over every offer when
    the offer's own is not positive). Raises `NotEnoughControls` when the evaluable campaigns
    hold fewer than `min_control` control customers."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    frame, n_campaigns = _training_rows(prep, evaluation, cfg, min_control)
    recipe = _Recipe(feature_specs(prep, cfg), _xgb_params(max_depth, nthread, seed),
                     max_rounds, seed)
    codes, customers = pd.factorize(frame["customer_id"])
    fold = np.random.default_rng(seed).permutation(len(customers))[codes] % folds
    uplift, risk, reduction = _cross_fit(recipe, frame, fold, folds, baseline_risk)
    final = recipe.fit(frame, risk_model=False)
    baseline = risk * reduction
    holdout = frame[["customer_id", "campaign_id", "offer", "group", "churned"]].assign(
        fold=fold, uplift=uplift, baseline=baseline, baseline_risk=risk,
        offer_reduction=reduction, label=np.where(uplift > 0, PERSUADABLE, LEAVE_ALONE),
    )
    treated = (holdout["group"] == "treatment").to_numpy()
    churned = holdout["churned"].to_numpy(dtype=float)
    scores = {"uplift_model": uplift, "baseline": baseline}
    qini = _qini_summary(holdout, scores, bootstrap, seed, evaluation.confidence)
    notes = _notes(frame, len(customers), n_campaigns, folds, max_depth, final,
                   baseline_risk is None, qini)
    return UpliftModel(
        treatment=final.treatment,
        control=final.control,
        specs=recipe.specs,
        categories=final.categories,
        holdout=holdout,
        deciles=pd.concat([_decile_table(name, s, treated, churned)
                           for name, s in scores.items()], ignore_index=True),
        qini=qini,
        curves={name: qini_curve(s, treated, churned) for name, s in scores.items()},
        notes=notes,
    )


def _training_rows(prep: PreparedData, evaluation: CampaignEvaluation, cfg: FeatureConfig,
                   min_control: int) -> tuple[pd.DataFrame, int]:
    """The compared customers of the evaluable campaigns with their send-date features, and
    the number of those campaigns; `NotEnoughControls` below `min_control` control rows."""
    evaluable = set(evaluation.evaluable["campaign_id"])
    outcomes = evaluation.outcomes.loc[evaluation.outcomes["campaign_id"].isin(evaluable)]
    n_control = int((outcomes["group"] == "control").sum())
    if n_control < min_control:
        raise NotEnoughControls(
            f"uplift model needs at least {min_control} control customers over the evaluable "
            f"campaigns; found {n_control} in {len(evaluable)} campaign(s)"
        )
    return _send_date_features(prep, outcomes, cfg), len(evaluable)


def _send_date_features(
    prep: PreparedData, outcomes: pd.DataFrame, cfg: FeatureConfig
) -> pd.DataFrame:
    """Lifecycle features of each compared customer as of the send date (normalised): only
    records strictly before the send day are read, so the campaign itself is not among them."""
    frames = []
    for (_, sent_at), part in outcomes.groupby(["campaign_id", "sent_at"], sort=False):
        customers = prep.customers.iloc[part["_pos"].to_numpy()].assign(
            _pos=part["_pos"].to_numpy()
        )
        features = build_features(prep, pd.Timestamp(sent_at).normalize(), customers, cfg)
        features = features.drop(columns=["customer_id", "as_of"])
        frames.append(pd.concat([part.reset_index(drop=True), features], axis=1))
    return pd.concat(frames, ignore_index=True)


def _xgb_params(max_depth: int, nthread: int, seed: int) -> dict:
    return {
        "objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist",
        "max_depth": max_depth, "eta": 0.05, "min_child_weight": 10.0, "subsample": 0.8,
        "colsample_bytree": 0.8, "lambda": 5.0, "nthread": nthread, "seed": seed,
        "max_cat_to_onehot": 1,
    }


@dataclass(frozen=True)
class _Learners:
    treatment: xgb.Booster
    control: xgb.Booster
    risk: xgb.Booster | None
    specs: list[FeatureSpec]
    categories: dict[str, list[str]]

    def _dmatrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        return xgb.DMatrix(encode_features(self.specs, self.categories, frame),
                           enable_categorical=True)

    def predict_uplift(self, frame: pd.DataFrame) -> np.ndarray:
        dm = self._dmatrix(frame)
        return self.control.predict(dm) - self.treatment.predict(dm)

    def predict_risk(self, frame: pd.DataFrame) -> np.ndarray:
        assert self.risk is not None
        return self.risk.predict(self._dmatrix(frame))


@dataclass(frozen=True)
class _Recipe:
    """How the learners are fitted: features, XGBoost parameters, round cap and seed."""

    specs: list[FeatureSpec]
    params: dict
    max_rounds: int
    seed: int

    def fit(self, train: pd.DataFrame, risk_model: bool) -> _Learners:
        """Churn models of the treatment and the control rows (and of all rows: `risk_model`)."""
        categories = category_levels(self.specs, train)
        X = encode_features(self.specs, categories, train)
        y = train["churned"].to_numpy(dtype=float)
        treated = (train["group"] == "treatment").to_numpy()
        return _Learners(
            treatment=self._fit_churn(X.loc[treated], y[treated]),
            control=self._fit_churn(X.loc[~treated], y[~treated]),
            risk=self._fit_churn(X, y) if risk_model else None,
            specs=self.specs,
            categories=categories,
        )

    def _fit_churn(self, X: pd.DataFrame, y: np.ndarray) -> xgb.Booster:
        """A small churn model: the number of rounds by early stopping (log loss) on a random
        quarter of the rows, then refitted on all of them."""
        inner = np.random.default_rng(self.seed).random(len(y)) < 0.25
        nthread = self.params["nthread"]

        def matrix(mask: np.ndarray) -> xgb.DMatrix:
            return xgb.DMatrix(X.loc[mask], label=y[mask], enable_categorical=True,
                               nthread=nthread)

        probe = xgb.train(self.params, matrix(~inner), num_boost_round=self.max_rounds,
                          evals=[(matrix(inner), "validation")], early_stopping_rounds=30,
                          verbose_eval=False)
        rounds = int(probe.best_iteration) + 1
        return xgb.train(self.params, matrix(np.ones(len(y), dtype=bool)),
                         num_boost_round=rounds)


def _cross_fit(
    recipe: _Recipe,
    frame: pd.DataFrame,
    fold: np.ndarray,
    folds: int,
    baseline_risk: Callable[[pd.DataFrame], np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold predicted uplift, baseline churn risk and the offer's pooled relative churn
    reduction of every row: each fold predicted by learners fitted on the other folds."""
    uplift, risk, reduction = (np.empty(len(frame)) for _ in range(3))
    for k in range(folds):
        inside = fold == k
        train, test = frame.loc[~inside], frame.loc[inside]
        fitted = recipe.fit(train, risk_model=baseline_risk is None)
        uplift[inside] = fitted.predict_uplift(test)
        risk[inside] = (fitted.predict_risk(test) if baseline_risk is None
                        else np.asarray(baseline_risk(test), dtype=float))
        rates = _offer_reductions(train)
        reduction[inside] = test["offer"].map(rates).fillna(rates[None]).to_numpy()
    return uplift, risk, reduction


def _offer_reductions(rows: pd.DataFrame) -> dict:
    """Pooled relative churn reduction per offer (Mantel-Haenszel over campaigns), clipped to
    [0, 1]; key None: over every offer, used where an offer's own is not positive."""
    def pooled(part: pd.DataFrame) -> float:
        strata = [group_counts(p) for _, p in part.groupby("campaign_id")]
        ch_t, n_t, ch_c, n_c = zip(*[(s[1], s[0], s[3], s[2]) for s in strata], strict=True)
        rr = mantel_haenszel(ch_t, n_t, ch_c, n_c)["risk_ratio"]
        return float(np.clip(1 - rr, 0.0, 1.0)) if np.isfinite(rr) else 0.0

    overall = pooled(rows)
    rates: dict = {None: overall}
    for offer, part in rows.groupby("offer"):
        own = pooled(part)
        rates[offer] = own if own > 0 else overall
    return rates


def _qini_summary(holdout: pd.DataFrame, scores: dict[str, np.ndarray], bootstrap: int,
                  seed: int, confidence: float) -> dict[str, float]:
    """Qini of each ranking, the difference model - baseline with its bootstrap interval, and
    the observed uplift and share of the persuadable / leave-alone rows."""
    treated = (holdout["group"] == "treatment").to_numpy()
    churned = holdout["churned"].to_numpy(dtype=float)
    qini = {name: qini_coefficient(s, treated, churned) for name, s in scores.items()}
    qini["difference"] = qini["uplift_model"] - qini["baseline"]
    low, high = _bootstrap_difference(holdout, scores, bootstrap, seed)
    qini.update(difference_low=low, difference_high=high)
    persuadable = (holdout["label"] == PERSUADABLE).to_numpy()
    for name, part in (("persuadable", persuadable), ("leave_alone", ~persuadable)):
        qini[f"observed_uplift_{name}"] = effect(*group_counts(holdout.loc[part]),
                                                 confidence)["uplift"]
        qini[f"share_{name}"] = float(part.mean())
    return qini


def _bootstrap_difference(holdout: pd.DataFrame, scores: dict[str, np.ndarray], reps: int,
                          seed: int, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of Qini(model) - Qini(baseline), resampling customers."""
    if reps <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    codes, uniques = pd.factorize(holdout["customer_id"])
    treated = (holdout["group"] == "treatment").to_numpy()
    churned = holdout["churned"].to_numpy(dtype=float)
    diffs = np.empty(reps)
    for i in range(reps):
        weight = np.bincount(rng.integers(0, len(uniques), len(uniques)),
                             minlength=len(uniques))[codes]
        diffs[i] = (qini_coefficient(scores["uplift_model"], treated, churned, weight)
                    - qini_coefficient(scores["baseline"], treated, churned, weight))
    alpha = (1 - confidence) / 2
    return float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))


def _decile_table(name: str, score: np.ndarray, treated: np.ndarray,
                  churned: np.ndarray) -> pd.DataFrame:
    # equal-frequency deciles, 1 = highest score; tied scores share a decile
    inner = np.quantile(score, np.linspace(0.0, 1.0, 11)[1:-1])
    decile = 10 - np.searchsorted(inner, score, side="right")
    rows = []
    for d in sorted(np.unique(decile)):
        inside = decile == d
        t, c = inside & treated, inside & ~treated
        n_t, n_c = int(t.sum()), int(c.sum())
        rows.append({
            "ranking": name,
            "decile": int(d),
            "rows": int(inside.sum()),
            "n_treatment": n_t,
            "n_control": n_c,
            "mean_score": float(score[inside].mean()),
            "retention_treatment": 1 - churned[t].mean() if n_t else np.nan,
            "retention_control": 1 - churned[c].mean() if n_c else np.nan,
        })
    table = pd.DataFrame(rows)
    table["observed_uplift"] = table["retention_treatment"] - table["retention_control"]
    return table


def _notes(frame: pd.DataFrame, n_customers: int, n_campaigns: int, folds: int, max_depth: int,
           final: _Learners, risk_fitted: bool, qini: dict[str, float]) -> list[str]:
    """What was fitted and how it scored, in words (logged with the model)."""
    treated = (frame["group"] == "treatment").to_numpy()
    return [
        f"T-learner (XGBoost depth {max_depth}, rounds by early stopping on a quarter of the "
        f"training rows) on {len(frame):,} rows of "
        f"{n_customers:,} customers from {n_campaigns} campaign(s): "
        f"{int(treated.sum()):,} treatment, {int((~treated).sum()):,} control; evaluated by "
        f"{folds}-fold cross-fitting over customers (every row predicted by models that never "
        f"saw its customer); final models: treatment {final.treatment.num_boosted_rounds()} "
        f"rounds, control {final.control.num_boosted_rounds()} rounds",
        "baseline ranking: churn risk x the offer's pooled relative churn reduction (training "
        "customers of the fold); churn risk "
        + ("from an XGBoost of the same size on both groups" if risk_fitted
           else "given by the caller"),
        f"Qini: uplift model {qini['uplift_model']:+.4f}, baseline {qini['baseline']:+.4f}, "
        f"difference {qini['difference']:+.4f} (95% bootstrap interval "
        f"{qini['difference_low']:+.4f} to {qini['difference_high']:+.4f}, customers "
        "resampled, models not refitted)",
    ]
