"""`churn train`: labelled snapshots → fitted bundle → evaluation → one MLflow run → a new
registered version of `churn-risk`.

The run holds the whole config as params, dataset lineage, metrics, plots and tables, the
campaign evaluation, and the bundle logged as a self-contained pyfunc model; promotion is a
separate job (`churn_risk.jobs.promote`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from churn_risk.features.io import DataSourceLike, source_name
from churn_risk.features.lifecycle import PreparedData
from churn_risk.features.snapshots import CHURN_LABEL
from churn_risk.features.target import TargetKind
from churn_risk.models.bundle import ChurnBundle
from churn_risk.training.config import TrainConfig
from churn_risk.training.evaluate import Evaluation
from churn_risk.training.split import Split
from churn_risk.training.tracking import TrackingSetup
from churn_risk.training.train import Step, TrainingData, build_training_data, fit_bundle

ENGINES = ("pandas", "dask")


@dataclass
class TrainResult:
    run_id: str
    model_uri: str
    version: str
    metrics: dict[str, float]
    split: Split
    bundle: ChurnBundle
    tracking: TrackingSetup
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def run(
    source: DataSourceLike,
    cfg: TrainConfig | None = None,
    prep: PreparedData | None = None,
    *,
    engine: str = "pandas",
    scheduler: str | None = None,
    project_dir: Path | None = None,
    step: Step | None = None,
) -> TrainResult:
    """Train, evaluate, log to MLflow and register a new version of the model. `prep`: the
    data of `source`, already read and validated (read here otherwise; the dask engine reads
    them on its workers). `scheduler`: a Dask scheduler address (default: a local cluster)."""
    from churn_risk.training.tracking import close_dead_runs, configure_tracking

    cfg = cfg or TrainConfig()
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    tracking = configure_tracking(project_dir)
    for run_id in close_dead_runs(tracking.experiment_id):
        logging.getLogger(__name__).warning("closed run %s: its process was killed (marked "
                                            "FAILED)", run_id)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    with _client(engine, scheduler) as client:
        data = build_training_data(source, cfg, engine, client, step, prep)
        seconds["features"] = time.perf_counter() - t
        t = time.perf_counter()
        bundle, split, fit_metrics, notes = fit_bundle(data.frame, data.specs, cfg, data.target,
                                                       step, client, data.measured_success)
        seconds["fit"] = time.perf_counter() - t

    t = time.perf_counter()
    evaluation = _evaluate(bundle, split, source, notes, cfg.figures)
    if step:
        step("evaluation", 1, 1)
    seconds["evaluate"] = time.perf_counter() - t

    t = time.perf_counter()
    run_id, model_uri, version = _log_run(source, cfg, engine, data, bundle, split, fit_metrics,
                                          evaluation, notes)
    seconds["log"] = time.perf_counter() - t
    return TrainResult(run_id, model_uri, version, {**fit_metrics, **evaluation.metrics}, split,
                       bundle, tracking, notes + evaluation.notes, seconds)


def run_name(target, source: DataSourceLike) -> str:
    """What ran, on what: the MLflow run name of a training."""
    return f"train {target.kind.value} {target.horizon_days}d on {source_name(source)}"


@contextlib.contextmanager
def _client(engine: str, scheduler: str | None) -> Iterator[object]:
    if engine != "dask":
        yield None
        return
    from churn_risk.features.dask_engine import dask_client

    with dask_client(scheduler) as client:
        yield client


def _evaluate(bundle: ChurnBundle, split: Split, source: DataSourceLike,
              notes: list[str], figures: bool = True) -> Evaluation:
    """The bundle on the test rows; against the demo's true probabilities when the data carry
    them and the target is the one they are probabilities of."""
    from churn_risk.training.evaluate import TRUTH_HORIZON_DAYS, evaluate, load_truth

    target = bundle.target
    truth = load_truth(source)
    if truth is not None and not (target.kind is TargetKind.subscription_end
                                  and target.horizon_days == TRUTH_HORIZON_DAYS):
        notes.append(f"no oracle comparison: the demo's ground truth is the {TRUTH_HORIZON_DAYS}-"
                     f"day subscription-end probability, the target is {target}")
        truth = None
    return evaluate(bundle, split.test, truth, figures=figures)


def _log_run(source, cfg: TrainConfig, engine: str, data: TrainingData, bundle: ChurnBundle,
             split: Split, fit_metrics: dict[str, float], evaluation: Evaluation,
             notes: list[str]) -> tuple[str, str, str]:
    """One MLflow run for the training; registers the logged model. (run id, model URI,
    registered version)."""
    import mlflow

    from churn_risk.models.pyfunc import log_bundle
    from churn_risk.training.campaigns import log_campaign_evaluation
    from churn_risk.training.registry import register
    from churn_risk.training.tracking import MODEL_NAME, job_tags

    target = data.target
    with mlflow.start_run(run_name=run_name(target, source)) as active:
        mlflow.set_tags({
            **job_tags(),
            "job": "train",
            "feature_set": cfg.features.name,
            "engine": engine,
            "split.method": split.method,
            "data": str(source),
            "target": str(target),
            "target.description": target.description,
        })
        if split.method != "time":
            mlflow.set_tag("warning", split.description)
        # The resolved target overrides the config's blanks (same `target.*` keys).
        mlflow.log_params({**cfg.as_params(), **split.as_params(), **target.as_params(),
                           "feature_set": cfg.features.name, "engine": engine,
                           "calibration": bundle.calibrator.method})
        log_dataset(data.frame, source, cfg.features.name)
        log_evaluation(evaluation, fit_metrics)
        mlflow.log_text("\n".join(notes + evaluation.notes), "notes.txt")
        if data.campaigns is not None:
            log_campaign_evaluation(data.campaigns)
        model_info = log_bundle(bundle, split.test)
        version = register(model_info.model_uri, active.info.run_id, MODEL_NAME,
                           tags={"feature_set": cfg.features.name, "split": split.method,
                                 "target": str(target)})
    return active.info.run_id, model_info.model_uri, version


def log_dataset(frame: pd.DataFrame, source, feature_set: str) -> None:
    """Dataset lineage: source, a digest of every row, and the schema.

    MLflow infers a dataset's schema row by row in Python (15 s for 200k snapshot rows), so the
    schema comes from the first rows while the digest covers the whole frame."""
    import mlflow

    digest = hashlib.sha256(
        pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    ).hexdigest()[:16]
    where = str(source) if "://" in str(source) else Path(str(source)).resolve().as_uri()
    # MLflow warns that a path "can be interpreted in multiple ways" and that customer_id is an
    # integer column; neither applies to a lineage record.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            frame.head(1000), source=where, name=f"{feature_set}-snapshots",
            targets=CHURN_LABEL, digest=digest,
        )
        mlflow.log_input(dataset, context="training", tags={
            "rows": str(len(frame)), "as_of_months": str(frame["as_of"].nunique()),
        })


def log_evaluation(evaluation: Evaluation, extra: dict[str, float]) -> None:
    """Metrics (finite ones), figures under `plots/` and tables under `tables/` of the active
    run."""
    import mlflow

    finite = {k: float(v) for k, v in {**extra, **evaluation.metrics}.items()
              if v is not None and np.isfinite(v)}
    mlflow.log_metrics(finite)
    for name, fig in evaluation.figures.items():
        mlflow.log_figure(fig, f"plots/{name}.png")
    for name, table in evaluation.tables.items():
        mlflow.log_text(table.to_csv(index=False), f"tables/{name}.csv")
