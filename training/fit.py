"""Fitting the pieces of the bundle: churn model (with a small model search), calibrator,
propensity models. Pure model code: no MLflow, no files."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from churn_risk.features.lifecycle import FeatureSpec
from churn_risk.models.bundle import Calibrator, sigmoid
from churn_risk.training.config import SearchSpace

Step = Callable[[str, int, int], None]


def category_levels(specs: list[FeatureSpec], frame: pd.DataFrame) -> dict[str, list[str]]:
    """Levels of each categorical feature as seen in training (they travel with the model)."""
    return {
        s.name: sorted(map(str, frame[s.name].dropna().unique()))
        for s in specs
        if s.kind == "categorical"
    }


def feature_ranges(specs: list[FeatureSpec], frame: pd.DataFrame
                   ) -> dict[str, tuple[float, float]]:
    """[min, max] of each numeric feature in training (they travel with the model)."""
    out = {}
    for s in specs:
        if s.kind == "categorical":
            continue
        values = pd.to_numeric(frame[s.name], errors="coerce")
        if values.notna().any():
            out[s.name] = (float(values.min()), float(values.max()))
    return out


@dataclass(frozen=True)
class Candidate:
    max_depth: int
    booster: xgb.Booster
    best_iteration: int
    validation_auc: float
    validation_logloss: float
    leaves: int  # total leaves: what TreeSHAP's cost grows with


def _params(space: SearchSpace, depth: int, nthread: int, seed: int,
            monotone: tuple[int, ...] | None) -> dict:
    params = {
        "objective": "binary:logistic",
        # Early stopping on log loss (calibration-friendly); validation AUC is computed once
        # afterwards, not every round (it cost a quarter of the fitting time).
        "eval_metric": "logloss",
        "tree_method": "hist",
        "max_depth": depth,
        "eta": space.learning_rate,
        "min_child_weight": space.min_child_weight,
        "subsample": space.subsample,
        "colsample_bytree": space.colsample_bytree,
        "lambda": space.reg_lambda,
        "nthread": nthread,
        "seed": seed,
        "max_cat_to_onehot": 1,
    }
    if monotone is not None and any(monotone):
        params["monotone_constraints"] = "(" + ",".join(map(str, monotone)) + ")"
    return params


def count_leaves(booster: xgb.Booster) -> int:
    return sum(tree.count("leaf=") for tree in booster.get_dump())


def train_booster(
    params: dict,
    dtrain,
    dval,
    space: SearchSpace,
    client=None,
) -> tuple[xgb.Booster, int]:
    """xgb.train with early stopping on the validation set (local DMatrix, or DaskDMatrix when
    a Dask client is given); returns the booster cut at its best iteration."""
    kwargs = dict(
        num_boost_round=space.num_boost_round,
        evals=[(dval, "validation")],
        early_stopping_rounds=space.early_stopping_rounds,
        verbose_eval=False,
    )
    if client is None:
        booster = xgb.train(params, dtrain, **kwargs)
    else:
        from xgboost import dask as dxgb

        booster = dxgb.train(client, params, dtrain, **kwargs)["booster"]
    best = int(booster.best_iteration)
    return booster[: best + 1], best


def search_model(
    specs: list[FeatureSpec],
    train_X: pd.DataFrame,
    train_y: np.ndarray,
    val_X: pd.DataFrame,
    val_y: np.ndarray,
    space: SearchSpace,
    depths: tuple[int, ...],
    monotone: bool,
    nthread: int,
    seed: int,
    step: Callable[[int, int], None] | None = None,
    client=None,
) -> tuple[Candidate, list[Candidate]]:
    """Try each depth with early stopping on validation; keep the smallest model whose
    validation AUC is within `auc_tolerance` of the best (quality equal → the model that is
    cheaper to explain)."""
    constraints = tuple(s.monotone for s in specs) if monotone else None
    if client is not None:
        nthread = 1  # one thread per Dask worker: more would oversubscribe the cores
    dtrain, dval = _matrices(train_X, train_y, val_X, val_y, nthread, client)
    local_val = xgb.DMatrix(val_X, enable_categorical=True, nthread=nthread)
    candidates = []
    for i, depth in enumerate(depths):
        params = _params(space, depth, nthread, seed, constraints)
        booster, best = train_booster(params, dtrain, dval, space, client)
        p = booster.predict(local_val)
        candidates.append(Candidate(
            depth, booster, best, float(roc_auc_score(val_y, p)),
            float(log_loss(val_y, np.clip(p, 1e-7, 1 - 1e-7))), count_leaves(booster),
        ))
        if step:
            step(i + 1, len(depths))
    best_auc = max(c.validation_auc for c in candidates)
    good = [c for c in candidates if c.validation_auc >= best_auc - space.auc_tolerance]
    return min(good, key=lambda c: c.leaves), candidates


def _matrices(train_X, train_y, val_X, val_y, nthread, client):
    if client is None:
        return (
            xgb.DMatrix(train_X, label=train_y, enable_categorical=True, nthread=nthread),
            xgb.DMatrix(val_X, label=val_y, enable_categorical=True, nthread=nthread),
        )
    return dask_matrix(client, train_X, train_y), dask_matrix(client, val_X, val_y)


#: Encoded rows kept on the Dask workers (the latest matrices sent, with the client's id).
_SENT: deque = deque(maxlen=2)


@dataclass(frozen=True)
class _Sent:
    """Encoded rows on the workers: a block per worker, with the index labels of its rows, and
    a hash of every row's values (by label) that tells whether later rows are the same."""

    client_id: str
    blocks: tuple  # futures
    workers: tuple[str, ...]  # where each block is
    index: tuple[pd.Index, ...]  # the labels of each block's rows, in order
    hashes: pd.Series
    dtypes: pd.Series


def dask_matrix(client, X: pd.DataFrame, y: np.ndarray):
    """A `DaskDMatrix` of `X` and `y` built from rows on the workers, referred to (never held)
    by the graphs the client sends (`dd.from_pandas` would put every row into them).

    The rows are sent once: a block to each worker (`client.scatter`). A later matrix whose rows
    are all among rows already sent (the propensity and value models train on subsets of the
    churn model's rows), with the same columns and values (a hash of every row says so), is
    filtered from them where they are: only its labels and a bit per row are sent. The latest
    two matrices sent stay on the workers until the next ones replace them or the client
    closes."""
    import dask.dataframe as dd
    from xgboost import dask as dxgb

    hashes = pd.util.hash_pandas_object(X, index=False)
    sent = _already_sent(client, X, hashes) if X.index.is_unique else None
    fresh = sent is None
    if fresh:
        sent = _send(client, X, hashes)
    y = pd.Series(np.asarray(y), index=X.index)
    X_parts, y_parts, start = [], [], 0
    for block, worker, index in zip(sent.blocks, sent.workers, sent.index, strict=True):
        if fresh:  # every row of the block, in order
            keep, labels = None, y.iloc[start:start + len(index)]
            start += len(index)
        else:
            rows = index.isin(X.index)
            keep, labels = np.packbits(rows), y.loc[index[rows]]
        X_parts.append(client.submit(_rows, block, keep, workers=[worker], pure=False))
        y_parts.append(client.scatter(labels.reset_index(drop=True), workers=[worker]))
    X_d = dd.from_delayed(X_parts, meta=X.iloc[:0].reset_index(drop=True), verify_meta=False)
    y_d = dd.from_delayed(y_parts, meta=y.iloc[:0].reset_index(drop=True), verify_meta=False)
    return dxgb.DaskDMatrix(client, X_d, y_d, enable_categorical=True)


def _already_sent(client, X: pd.DataFrame, hashes: pd.Series) -> _Sent | None:
    """Rows on the workers that hold every row of `X`, the same values, in the same order, with
    some of them on every worker (XGBoost refuses a worker without rows of a categorical
    frame)."""
    for sent in reversed(_SENT):
        if (sent.client_id == client.id and X.dtypes.equals(sent.dtypes)
                and X.index.isin(sent.hashes.index).all()
                and np.array_equal(sent.hashes.reindex(X.index).to_numpy(), hashes.to_numpy())):
            rows = [i[i.isin(X.index)] for i in sent.index]
            if all(len(r) for r in rows) and np.array_equal(np.concatenate(rows),
                                                            X.index.to_numpy()):
                return sent
    return None


def _send(client, X: pd.DataFrame, hashes: pd.Series) -> _Sent:
    workers = list(client.scheduler_info()["workers"])[:max(1, len(X))]
    edges = np.linspace(0, len(X), len(workers) + 1).astype(int)
    blocks = [client.scatter(X.iloc[a:b], workers=[w])
              for w, a, b in zip(workers, edges[:-1], edges[1:], strict=True)]
    sent = _Sent(client.id, tuple(blocks), tuple(workers),
                 tuple(X.index[a:b] for a, b in zip(edges[:-1], edges[1:], strict=True)),
                 hashes if X.index.is_unique else hashes.iloc[:0], X.dtypes)
    _SENT.append(sent)
    return sent


def _rows(block: pd.DataFrame, keep: np.ndarray | None) -> pd.DataFrame:
    """The rows of a block of encoded rows whose bit is set in `keep` (None: all), numbered
    from 0 (on a worker)."""
    if keep is not None:
        block = block.iloc[np.flatnonzero(np.unpackbits(keep, count=len(block)))]
    return block.reset_index(drop=True)


def refit_cross_fitted(
    specs: list[FeatureSpec],
    X: pd.DataFrame,
    y: np.ndarray,
    groups: np.ndarray,
    chosen: Candidate,
    space: SearchSpace,
    monotone: bool,
    nthread: int,
    seed: int,
    folds: int = 5,
) -> tuple[xgb.Booster, np.ndarray]:
    """For a customer-level holdout (small data, often one labelled date): the chosen model
    (depth, number of trees) refitted on training and validation rows together, and the
    out-of-fold margins of every one of those rows from `folds` models of the same settings, each
    fitted without the customers it scores (`groups`). Calibrating on out-of-fold margins of all
    rows instead of the validation rows alone gives the calibrator `folds` times the data, and
    the model itself more customers to learn from; the test customers stay untouched."""
    from sklearn.model_selection import StratifiedGroupKFold

    constraints = tuple(s.monotone for s in specs) if monotone else None
    params = _params(space, chosen.max_depth, nthread, seed, constraints)
    rounds = chosen.best_iteration + 1
    oof = np.zeros(len(y))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_idx, out_idx in splitter.split(X, y, groups):
        dfit = xgb.DMatrix(X.iloc[fit_idx], label=y[fit_idx], enable_categorical=True,
                           nthread=nthread)
        booster = xgb.train(params, dfit, num_boost_round=rounds)
        oof[out_idx] = booster.predict(
            xgb.DMatrix(X.iloc[out_idx], enable_categorical=True, nthread=nthread),
            output_margin=True)
    dall = xgb.DMatrix(X, label=y, enable_categorical=True, nthread=nthread)
    return xgb.train(params, dall, num_boost_round=rounds), oof


def fit_calibrator(margin: np.ndarray, y: np.ndarray, seed: int = 42) -> tuple[Calibrator, dict]:
    """Isotonic or Platt, whichever has the lower out-of-fold log loss on the validation
    snapshot (choosing on in-sample loss would always favour isotonic)."""
    y = np.asarray(y, dtype=int)
    losses = {"isotonic": [], "platt": []}
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    for fit_idx, eval_idx in folds.split(margin.reshape(-1, 1), y):
        for method in losses:
            cal = _fit_one(method, margin[fit_idx], y[fit_idx])
            p = np.clip(cal(margin[eval_idx]), 1e-7, 1 - 1e-7)
            losses[method].append(log_loss(y[eval_idx], p, labels=[0, 1]))
    mean = {m: float(np.mean(v)) for m, v in losses.items()}
    method = min(mean, key=mean.get)
    return _fit_one(method, margin, y), {f"calibration_logloss_{m}": v for m, v in mean.items()}


def _fit_one(method: str, margin: np.ndarray, y: np.ndarray) -> Calibrator:
    if method == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
        iso.fit(sigmoid(margin), y)
        return Calibrator("isotonic", x=tuple(map(float, iso.X_thresholds_)),
                          y=tuple(map(float, iso.y_thresholds_)))
    lr = LogisticRegression(C=1e6)
    lr.fit(margin.reshape(-1, 1), y)
    return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def fit_value_model(
    train_X: pd.DataFrame,
    train_spend: np.ndarray,
    val_X: pd.DataFrame,
    val_spend: np.ndarray,
    space: SearchSpace,
    max_depth: int,
    nthread: int,
    seed: int,
    client=None,
) -> tuple[xgb.Booster, dict[str, float]]:
    """Net spend over the horizon of customers who stayed: an XGBoost regressor with a Tweedie
    loss (spend is zero for many customers and heavily right-skewed; Tweedie predicts the mean,
    which is what an expected margin needs). Early stopping on the validation snapshot."""
    params = {
        "objective": "reg:tweedie",
        "tweedie_variance_power": 1.5,
        "eval_metric": "tweedie-nloglik@1.5",
        "tree_method": "hist",
        "max_depth": max_depth,
        "eta": space.learning_rate,
        "min_child_weight": space.min_child_weight,
        "subsample": space.subsample,
        "colsample_bytree": space.colsample_bytree,
        "lambda": space.reg_lambda,
        "nthread": 1 if client is not None else nthread,
        "seed": seed,
        "max_cat_to_onehot": 1,
    }
    train_spend = np.maximum(np.asarray(train_spend, float), 0.0)  # net refunds: no spend
    val_spend = np.maximum(np.asarray(val_spend, float), 0.0)
    dtrain, dval = _matrices(train_X, train_spend, val_X, val_spend, nthread, client)
    booster, best = train_booster(params, dtrain, dval, space, client)
    predicted = booster.predict(xgb.DMatrix(val_X, enable_categorical=True, nthread=nthread))
    return booster, {
        "value_model_trees": float(best + 1),
        "validation_value_mae": float(np.mean(np.abs(predicted - val_spend))),
        "validation_value_total_ratio": float(predicted.sum() / max(val_spend.sum(), 1e-9)),
    }
