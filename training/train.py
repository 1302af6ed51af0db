"""What training is made of, without MLflow: the labelled snapshots of a data set
(`build_training_data`), and the bundle fitted on them (`fit_bundle`: time or customer split →
churn model search → calibration → propensity and value models → portfolio policy).

The `churn train` job (`churn_risk.jobs.train`) runs these, evaluates, and logs and registers the
result in MLflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churn_risk.errors import DataError
from churn_risk.features.io import DataSourceLike
from churn_risk.features.labels import DataFacts, resolve_target
from churn_risk.features.lifecycle import FeatureSpec, PreparedData
from churn_risk.features.snapshots import ADOPTION_PREFIX, CHURN_LABEL, SPEND_LABEL
from churn_risk.features.target import Target, TargetKind
from churn_risk.models.bundle import HIGH_RISK_BAND, ChurnBundle, encode_features, high_risk_from
from churn_risk.models.portfolio import fit_policy, load_catalogue, with_measured_success
from churn_risk.training.campaigns import CampaignEvaluation, evaluate_campaigns, success_rates
from churn_risk.training.config import TrainConfig
from churn_risk.training.fit import (
    category_levels,
    feature_ranges,
    fit_calibrator,
    fit_value_model,
    refit_cross_fitted,
    search_model,
)
from churn_risk.training.monitor import reference_profile
from churn_risk.training.split import Split, gap_months, split_by_time

Step = Callable[[str, int, int], None]


@dataclass
class TrainingData:
    """Everything a fit needs from the data, read once: the labelled snapshots, the specs of
    their features, the resolved target, and the evaluation of past campaigns (None without
    campaign data) with the success rates per offer it measured for the portfolio policy."""

    frame: pd.DataFrame
    specs: list[FeatureSpec]
    target: Target
    campaigns: CampaignEvaluation | None = None
    measured_success: dict[str, dict] = field(default_factory=dict)


def training_target(prep: PreparedData | DataFacts, cfg: TrainConfig) -> Target:
    """The config's `[target]` checked against the data, unset parts decided from them."""
    return resolve_target(prep, cfg.target.kind, cfg.target.horizon_days,
                          cfg.target.lapsed_after_days)


def build_training_data(
    source: DataSourceLike,
    cfg: TrainConfig,
    engine: str = "pandas",
    client=None,
    step: Step | None = None,
    prep: PreparedData | None = None,
) -> TrainingData:
    """The labelled snapshots of `source`, their feature specs, the target and the campaign
    evaluation. pandas: from `prep` (the data already read and prepared; read here otherwise).
    dask: read, prepared and turned into snapshots on the workers of `client` (`prep` unused):
    the driver decides the target and the dates from the data's facts and gets back the
    snapshots and the campaigns' compared customers, never a table. Raises `DataError` when the
    labelled rows cannot train a model (none, or a single class)."""
    if engine == "dask":
        return _training_data_dask(source, cfg, client, step)
    from churn_risk.features.lifecycle import feature_specs
    from churn_risk.features.snapshots import build_training_frame, training_as_ofs
    from churn_risk.jobs.common import prepared

    prep = prepared(source, prep)
    target = training_target(prep, cfg)
    as_ofs = training_as_ofs(prep, cfg.features, target, cfg.first_as_of, cfg.last_as_of)
    frame = build_training_frame(
        prep, as_ofs, cfg.features, target,
        progress=(lambda d, t: step("building snapshots", d, t)) if step else None,
    )
    specs = feature_specs(prep, cfg.features)
    check_trainable(frame, as_ofs, target)
    campaigns = None
    if prep.has("campaigns") and len(prep.events["campaigns"]):
        campaigns = evaluate_campaigns(prep, cfg.features, target)
    measured = {} if campaigns is None else success_rates(campaigns, cfg.min_control)
    return TrainingData(frame, specs, target, campaigns, measured)


def _training_data_dask(source: DataSourceLike, cfg: TrainConfig, client,
                        step: Step | None) -> TrainingData:
    """`build_training_data` on the workers of `client` (see there)."""
    from churn_risk.features.dask_engine import prepare_dask
    from churn_risk.features.snapshots import training_as_ofs
    from churn_risk.training.campaigns.effects import evaluate_campaigns_dask

    data = prepare_dask(source, client)
    target = training_target(data.facts, cfg)
    as_ofs = training_as_ofs(data.facts, cfg.features, target, cfg.first_as_of, cfg.last_as_of)
    frame, specs = data.frame(
        as_ofs, cfg.features, target, labelled=True,
        progress=(lambda d, t: step("building snapshots", d, t)) if step else None,
    )
    check_trainable(frame, as_ofs, target)
    campaigns = None
    if data.facts.rows.get("campaigns"):
        campaigns = evaluate_campaigns_dask(data, target)
    measured = {} if campaigns is None else success_rates(campaigns, cfg.min_control)
    return TrainingData(frame, specs, target, campaigns, measured)


#: Fewest labelled customers of each class that can be split three ways and still measured.
MIN_PER_CLASS = 20


def check_trainable(frame: pd.DataFrame, as_ofs: list, target: Target) -> None:
    """`DataError` naming the dates when the labelled rows cannot train and test a model."""
    dates = ", ".join(f"{pd.Timestamp(d):%Y-%m-%d}" for d in as_ofs[:3]) + (
        f" ... {pd.Timestamp(as_ofs[-1]):%Y-%m-%d}" if len(as_ofs) > 3 else "")
    if not len(frame):
        why = ("none of the labelled customers is a customer (signed up before the date)"
               if target.kind is TargetKind.labels else "no customer is in the population")
        raise DataError(f"zero labelled rows at {dates} ({target}): {why}")
    counts = frame[CHURN_LABEL].value_counts()
    churned, stayed = int(counts.get(1.0, 0)), int(counts.get(0.0, 0))
    if min(churned, stayed) < MIN_PER_CLASS:
        raise DataError(
            f"{len(frame):,} labelled rows at {dates} ({target}) hold {churned:,} churned and "
            f"{stayed:,} staying customers: a model needs at least {MIN_PER_CLASS} of each to "
            "train, validate and test. Check the labels (or the horizon), or bring more history")


def fit_bundle(
    frame: pd.DataFrame,
    specs: list[FeatureSpec],
    cfg: TrainConfig,
    target: Target,
    step: Step | None = None,
    client=None,
    measured_success: dict[str, dict] | None = None,
) -> tuple[ChurnBundle, Split, dict[str, float], list[str]]:
    """Split by time, fit churn model + calibrator + propensity models + value model, and the
    portfolio policy (matrix thresholds, actions with `measured_success` rates per offer from
    campaign evaluation); no MLflow here."""
    split = split_by_time(
        frame,
        cfg.gap_months if cfg.gap_months is not None else gap_months(target.horizon_days),
        cfg.holdout_share,
        cfg.seed,
    )
    for side in ("train", "validation", "test"):
        labels = getattr(split, side)[CHURN_LABEL]
        if labels.nunique() < 2:
            raise DataError(f"the {side} side of the {split.method.replace('_', ' ')} split has "
                            f"{len(labels):,} rows of a single class: {split.description}. "
                            "More labelled history (or customers) is needed")
    notes = [f"target: {target}: {target.description}", split.description]
    if target.lapsed_after_days is not None and target.kind is not TargetKind.subscription_end:
        notes.append(f"customers silent for {target.lapsed_after_days} days or more are former "
                     "customers, not scored (lapsed_after_days)")
    names = [s.name for s in specs]
    categories = category_levels(specs, split.train)

    def matrix(rows: pd.DataFrame) -> pd.DataFrame:
        return encode_features(specs, categories, rows)

    train_X, val_X = matrix(split.train), matrix(split.validation)
    train_y = split.train[CHURN_LABEL].to_numpy(dtype=int)
    val_y = split.validation[CHURN_LABEL].to_numpy(dtype=int)
    chosen, candidates = search_model(
        specs, train_X, train_y, val_X, val_y, cfg.search, cfg.search.max_depth, cfg.monotone,
        cfg.nthread, cfg.seed, (lambda d, t: step("churn model search", d, t)) if step else None,
        client,
    )
    fit_metrics: dict[str, float] = {}
    for c in candidates:
        fit_metrics[f"search_depth{c.max_depth}_validation_auc"] = c.validation_auc
        fit_metrics[f"search_depth{c.max_depth}_leaves"] = float(c.leaves)
    fit_metrics.update({
        "model_max_depth": float(chosen.max_depth),
        "model_trees": float(chosen.best_iteration + 1),
        "model_leaves": float(chosen.leaves),
        "validation_roc_auc": chosen.validation_auc,
    })
    notes.append(
        f"churn model: depth {chosen.max_depth}, {chosen.best_iteration + 1} trees "
        f"({chosen.leaves} leaves), validation AUC {chosen.validation_auc:.4f}"
    )

    import xgboost as xgb

    churn_booster = chosen.booster
    if split.method == "customer_holdout" and client is None:
        seen = pd.concat([split.train, split.validation])
        churn_booster, cal_margin = refit_cross_fitted(
            specs, matrix(seen), seen[CHURN_LABEL].to_numpy(dtype=int),
            seen["customer_id"].astype(str).to_numpy(), chosen, cfg.search, cfg.monotone,
            cfg.nthread, cfg.seed)
        cal_y = seen[CHURN_LABEL].to_numpy(dtype=int)
        notes.append(f"churn model refitted on the training and validation customers together "
                     f"({len(seen):,} rows) with the chosen depth and trees; calibrated on their "
                     "5-fold out-of-fold scores")
    else:
        cal_margin = chosen.booster.predict(
            xgb.DMatrix(val_X, enable_categorical=True, nthread=cfg.nthread), output_margin=True
        )
        cal_y = val_y
    calibrator, cal_metrics = fit_calibrator(cal_margin, cal_y, cfg.seed)
    fit_metrics.update(cal_metrics)
    notes.append(f"calibration: {calibrator.method} (the lower out-of-fold log loss)")

    propensity = {}
    if cfg.propensity:
        families = [c[len(ADOPTION_PREFIX):] for c in frame.columns
                    if c.startswith(ADOPTION_PREFIX)]
        for i, family in enumerate(families):
            column = f"{ADOPTION_PREFIX}{family}"
            tr = split.train[split.train[column].notna()]
            va = split.validation[split.validation[column].notna()]
            positives = int(tr[column].sum())
            if positives < cfg.min_positives or va[column].nunique() < 2:
                notes.append(f"no propensity model for {family}: {positives} adopters in "
                             f"training (need {cfg.min_positives})")
                continue
            best, _ = search_model(
                specs, matrix(tr), tr[column].to_numpy(dtype=int),
                matrix(va), va[column].to_numpy(dtype=int),
                cfg.search, cfg.search.propensity_max_depth, False, cfg.nthread, cfg.seed,
                None, client,
            )
            propensity[family] = best.booster
            fit_metrics[f"propensity_{family}_validation_auc"] = best.validation_auc
            if step:
                step("propensity models", i + 1, len(families))

    value = None
    if SPEND_LABEL in frame and frame[SPEND_LABEL].notna().any():
        # the value of a customer *if retained*: learnt from those who stayed
        tr = split.train[(split.train[CHURN_LABEL] == 0) & split.train[SPEND_LABEL].notna()]
        va = split.validation[(split.validation[CHURN_LABEL] == 0)
                              & split.validation[SPEND_LABEL].notna()]
        value, value_metrics = fit_value_model(
            matrix(tr), tr[SPEND_LABEL].to_numpy(), matrix(va), va[SPEND_LABEL].to_numpy(),
            cfg.search, cfg.value_max_depth, cfg.nthread, cfg.seed, client,
        )
        fit_metrics.update(value_metrics)
        notes.append(f"value model: {value_metrics['value_model_trees']:.0f} trees, validation "
                     f"MAE {value_metrics['validation_value_mae']:.1f} per customer")
        if step:
            step("value model", 1, 1)
    else:
        notes.append("no value model: no transactions or recurring amounts, or no labelled date "
                     "with the whole horizon after it in the data, to learn spend from")

    bundle = ChurnBundle(
        specs=specs,
        categories=categories,
        churn=churn_booster,
        calibrator=calibrator,
        target=target,
        propensity=propensity,
        risk_bands=cfg.risk_bands,
        value=value,
        info={
            "feature_config": cfg.features.model_dump(mode="json"),
            "feature_set": cfg.features.name,
            "split": split.method,
            "features": names,
        },
        holdout=split.holdout,
        ranges=feature_ranges(specs, pd.concat([split.train, split.validation])),
    )
    bundle.policy = _fit_policy(bundle, split, cfg, target, measured_success or {})
    notes.append(
        f"risk matrix: high risk from {bundle.policy.risk_threshold:.1%} churn probability "
        f"(the {HIGH_RISK_BAND!r} risk band), "
        f"high value from {bundle.policy.value_threshold:,.0f} lifetime value"
    )
    return bundle, split, fit_metrics, notes


def _fit_policy(bundle: ChurnBundle, split: Split, cfg: TrainConfig, target: Target,
                measured: dict[str, dict]):
    """The matrix's value threshold from the newest snapshot the model has not been trained on
    (the portfolio as it will be scored), which is also the drift reference stored with the model
    (`training.monitor.reference_profile`); its risk split is the `high` risk band's; retention
    over one horizon from the training labels."""
    reference = split.test if len(split.test) else split.validation
    reference = reference.loc[reference["as_of"] == reference["as_of"].max()]
    dm = bundle.dmatrix(reference)
    probability = bundle.calibrator(bundle.churn_margin(dm))
    spend = (bundle.value.predict(dm, validate_features=False) if bundle.value is not None
             else np.zeros(len(reference)))
    actions = with_measured_success(load_catalogue(cfg.actions), measured)
    bundle.info["measured_success"] = measured
    # the drift reference `churn monitor` compares the scored portfolio with
    bundle.info["reference"] = reference_profile(
        reference, bundle.specs, bundle.categories, probability,
        history=(split.train, split.validation, split.test))
    return fit_policy(spend, 1.0 - float(split.train[CHURN_LABEL].mean()), target.horizon_days,
                      high_risk_from(bundle.risk_bands), cfg.value, cfg.matrix, actions)


