"""The Dask engine runs the same feature functions and gives the same rows as pandas, without
reading a table on the driver or putting data into a graph.

One LocalCluster of two worker processes serves the module. Graph sizes are distributed's own:
with `distributed.admin.large-graph-warning-threshold` at 1 byte, the client reports every graph
it sends in a "Sending large graph of size X" warning. The workers are other processes, so the
`data_reads` spy (and those on `prepare` and `load_crm`) count the driver's calls only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churn_risk.features.config import FeatureConfig
from churn_risk.features.dask_engine import (
    build_frame_dask,
    dask_client,
    graph_sizes,
    prepare_dask,
)
from churn_risk.features.io import data_source, write_tables
from churn_risk.features.labels import DataFacts, resolve_target, scoring_as_of
from churn_risk.features.lifecycle import feature_specs, prepare
from churn_risk.features.snapshots import (
    build_snapshot,
    build_training_frame,
    monthly_as_ofs,
    training_as_ofs,
)
from churn_risk.features.validation import load_crm
from churn_risk.serving.batch import score_portfolio
from churn_risk.training.config import SearchSpace, TrainConfig
from churn_risk.training.train import build_training_data, fit_bundle
from tests.conftest import FAST

pytestmark = pytest.mark.slow

MIB = 2**20
#: A graph may hold tasks, never the data: the largest one stays below this share of the size
#: of the training frame (and below 1 MiB).
GRAPH_SHARE = 0.05


@pytest.fixture(scope="module")
def client():
    with dask_client(n_workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        yield client


@pytest.fixture
def driver_calls(data_reads, monkeypatch) -> dict[str, list]:
    """`data_reads`, plus every call in this process of `lifecycle.prepare` and
    `validation.load_crm` (what reading and preparing the data on the driver goes through)."""
    from churn_risk.features import lifecycle, validation

    calls: dict[str, list] = {"read_tables": data_reads, "prepare": [], "load_crm": []}

    def counting(name: str, real):
        def counted(*args, **kwargs):
            calls[name].append(args)
            return real(*args, **kwargs)
        return counted

    for module, name in ((lifecycle, "prepare"), (validation, "load_crm")):
        monkeypatch.setattr(module, name, counting(name, getattr(module, name)))
    return calls


@pytest.fixture
def sent_and_received(monkeypatch) -> tuple[list, list]:
    """What the driver scatters to the workers and what it gathers from them, from now on."""
    from distributed import Client

    scattered, gathered = [], []
    real_scatter, real_gather = Client.scatter, Client.gather

    def scatter(self, data, *args, **kwargs):
        scattered.append(data)
        return real_scatter(self, data, *args, **kwargs)

    def gather(self, futures, *args, **kwargs):
        result = real_gather(self, futures, *args, **kwargs)
        gathered.extend(result if isinstance(result, list) else [result])
        return result

    monkeypatch.setattr(Client, "scatter", scatter)
    monkeypatch.setattr(Client, "gather", gather)
    return scattered, gathered


@pytest.fixture(scope="module")
def local_training(prep):
    """The pandas engine's training data of the demo data."""
    return build_training_data("unused", FAST, prep=prep)


@pytest.fixture(scope="module")
def graph_bound(local_training) -> float:
    """The largest graph allowed on the demo data (the test data's frame: ~2.5 MiB)."""
    return min(MIB, GRAPH_SHARE * local_training.frame.memory_usage(deep=True).sum())


@pytest.fixture(scope="module")
def bundle(local_training):
    """A model fitted locally on the demo data (what scoring needs; no MLflow)."""
    data = local_training
    return fit_bundle(data.frame, data.specs, FAST, data.target)[0]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["as_of", "customer_id"]).reset_index(drop=True)


# ---------------------------------------------------------------------------- same rows


def test_dask_equals_pandas_on_a_two_worker_local_cluster(demo_folder, prep, client):
    cfg = FeatureConfig()
    target = resolve_target(prep)
    as_ofs = monthly_as_ofs(prep, cfg, target)[-2:]
    latest = monthly_as_ofs(prep, cfg)[-1]
    address = client.scheduler.address
    snapshot, specs = build_frame_dask(demo_folder, [latest], cfg, target, scheduler=address,
                                       npartitions=4)
    training, _ = build_frame_dask(demo_folder, as_ofs, cfg, target, labelled=True,
                                   scheduler=address, npartitions=3)
    assert specs == feature_specs(prep)
    pd.testing.assert_frame_equal(snapshot, _sorted(build_snapshot(prep, latest, cfg, target)),
                                  check_exact=True)
    pd.testing.assert_frame_equal(
        training, _sorted(build_training_frame(prep, as_ofs, cfg, target)), check_exact=True)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_facts_of_the_partitions_add_up_to_those_of_the_data(fmt, demo_folder, raw_tables,
                                                                 prep, tmp_path, client):
    folder, local = demo_folder, prep
    if fmt == "csv":
        write_tables(raw_tables, tmp_path, "csv")
        folder, local = tmp_path, prepare(load_crm(tmp_path))
    data = prepare_dask(folder, client, npartitions=3)
    assert data.facts == DataFacts.of(local)
    cfg = FeatureConfig()
    for kind, horizon in ((None, None), ("no_purchase", 60), ("subscription_end", 30)):
        target = resolve_target(data.facts, kind, horizon)
        assert target == resolve_target(local, kind, horizon)
        assert training_as_ofs(data.facts, cfg, target) == training_as_ofs(local, cfg, target)
    as_of = scoring_as_of(data.facts)
    assert as_of == scoring_as_of(local)
    frame, _ = data.frame([as_of], cfg, target)
    pd.testing.assert_frame_equal(frame, _sorted(build_snapshot(local, as_of, cfg, target)),
                                  check_exact=True)


# ---------------------------------------------------------------------------- training


def test_dask_training_reads_no_table_on_the_driver_and_sends_no_data_in_a_graph(
        demo_folder, client, driver_calls, graph_bound, sent_and_received):
    from dask.sizeof import sizeof

    with graph_sizes() as sizes:
        data = build_training_data(demo_folder, FAST, "dask", client)
        bundle, split, metrics, _ = fit_bundle(data.frame, data.specs, FAST, data.target,
                                               client=client,
                                               measured_success=data.measured_success)
    assert driver_calls == {"read_tables": [], "prepare": [], "load_crm": []}
    # Every graph is small next to the data: building the matrices with `dd.from_pandas` of
    # the training rows sent graphs of a third of the frame's size here.
    assert len(sizes) > 10 and max(sizes) < graph_bound, (max(sizes), graph_bound)
    # The models' rows go to the workers once (the propensity and value models' subsets are
    # filtered where they are): sending each model its rows would be twice the frame here.
    scattered, _ = sent_and_received
    assert len(bundle.propensity) >= 2
    assert 0 < sum(map(sizeof, scattered)) < data.frame.memory_usage(deep=True).sum()
    assert metrics["validation_roc_auc"] > 0.6 and len(split.test)


def test_dask_training_data_equal_the_pandas_ones(demo_folder, client, local_training):
    on_dask = build_training_data(demo_folder, FAST, "dask", client)
    local = local_training
    pd.testing.assert_frame_equal(on_dask.frame, _sorted(local.frame), check_exact=True)
    assert on_dask.specs == local.specs
    assert on_dask.target == local.target
    assert on_dask.measured_success == local.measured_success
    dask_eval, local_eval = on_dask.campaigns, local.campaigns
    assert len(local_eval.campaigns) == 3 and local_eval.campaigns["evaluable"].any()
    for table in ("campaigns", "segments", "offers"):
        pd.testing.assert_frame_equal(getattr(dask_eval, table), getattr(local_eval, table),
                                      check_exact=True)
    # The compared customers are the same; `_pos` would point into a driver-side customers
    # table the dask path does not have.
    assert (dask_eval.outcomes["_pos"] == -1).all()
    key = ["campaign_id", "customer_id"]
    pd.testing.assert_frame_equal(
        dask_eval.outcomes.drop(columns="_pos").sort_values(key).reset_index(drop=True),
        local_eval.outcomes.drop(columns="_pos").sort_values(key).reset_index(drop=True))
    assert (dask_eval.confidence, dask_eval.horizon_days, dask_eval.churn_definition) == (
        local_eval.confidence, local_eval.horizon_days, local_eval.churn_definition)


def test_the_company_labels_and_the_lapse_rule_come_from_facts_on_the_workers(
        raw_tables, tmp_path, client, data_reads):
    """Label dates (two of them, for some customers) and the purchase gaps that choose
    `lapsed_after_days` are facts too; without subscriptions the population follows the lapse
    rule and the campaigns are measured with no purchase."""
    customers = raw_tables["customers"]["customer_id"]
    labels = pd.concat([
        pd.DataFrame({"customer_id": customers.sample(frac=0.6, random_state=seed).to_numpy(),
                      "as_of": as_of})
        for seed, as_of in ((1, "2024-03-15"), (2, "2024-09-10"))], ignore_index=True)
    labels["churned"] = np.where(np.random.default_rng(3).random(len(labels)) < 0.3, "yes", "no")
    tables = {k: v for k, v in raw_tables.items() if k != "subscriptions"} | {"labels": labels}
    write_tables(tables, tmp_path, "parquet")
    cfg = TrainConfig.model_validate({**FAST.model_dump(),
                                      "target": {"kind": "labels", "horizon_days": 60}})
    on_dask = build_training_data(tmp_path, cfg, "dask", client)
    assert data_reads == []
    local = build_training_data(tmp_path, cfg, prep=prepare(load_crm(tmp_path)))
    assert on_dask.target == local.target and on_dask.target.lapsed_after_days is not None
    assert sorted(on_dask.frame["as_of"].unique()) == [pd.Timestamp("2024-03-15"),
                                                      pd.Timestamp("2024-09-10")]
    pd.testing.assert_frame_equal(on_dask.frame, _sorted(local.frame), check_exact=True)
    for table in ("campaigns", "segments", "offers"):
        pd.testing.assert_frame_equal(getattr(on_dask.campaigns, table),
                                      getattr(local.campaigns, table), check_exact=True)
    assert on_dask.campaigns.churn_definition == "no_purchase"


# ---------------------------------------------------------------------------- scoring


def test_dask_scoring_scores_each_partition_where_it_is_built(demo_folder, prep, client, bundle,
                                                              driver_calls, graph_bound,
                                                              sent_and_received):
    """Only the bundle goes to the workers and only scores come back: no feature frame passes
    through the driver."""
    scattered, gathered = sent_and_received
    with graph_sizes() as sizes:
        on_dask = score_portfolio(demo_folder, None, bundle, "churn-risk", "1", engine="dask",
                                  chunk_rows=100, scheduler=client.scheduler.address)
    assert driver_calls == {"read_tables": [], "prepare": [], "load_crm": []}
    assert [type(x).__name__ for x in scattered] == ["ChurnBundle"]
    features = {s.name for s in bundle.specs} - set(on_dask.columns)
    frames = [x for x in gathered if isinstance(x, pd.DataFrame)]
    assert frames and not any(features & set(f.columns) for f in frames)
    assert max(sizes) < graph_bound, (max(sizes), graph_bound)
    pd.testing.assert_frame_equal(
        on_dask, score_portfolio(demo_folder, None, bundle, "churn-risk", "1", prep=prep))


# ---------------------------------------------------------------------------- other sources


def test_a_sql_source_is_read_in_ranges_of_customer_ids_on_the_workers(
        raw_tables, prep, tmp_path, client, data_reads):
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    for name, frame in raw_tables.items():
        frame.to_sql(name, engine, index=False)
    engine.dispose()
    cfg = FeatureConfig()
    data = prepare_dask(url, client, npartitions=3, sql_rows_per_part=1000)
    target = resolve_target(data.facts)
    as_of = scoring_as_of(data.facts)
    frame, _ = data.frame([as_of], cfg, target)
    assert data_reads == []
    assert data.facts == DataFacts.of(prep)
    pd.testing.assert_frame_equal(frame, _sorted(build_snapshot(prep, as_of, cfg, target)),
                                  check_exact=True)


def _export(raw_tables: dict[str, pd.DataFrame], folder) -> None:
    """The demo's activity in an export's shape: its own column names, text customer codes,
    semicolons, decimal commas, day-first dates, yes/no flags, and no customers table."""
    def text(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out["customer_id"] = "K-" + out["customer_id"].astype(str)
        for column in out.columns:
            if out[column].dtype.kind == "M":
                out[column] = out[column].dt.strftime("%d/%m/%Y %H:%M:%S")
            elif out[column].dtype.kind == "f":
                out[column] = out[column].map(lambda v: "" if np.isnan(v) else f"{v:g}".replace(
                    ".", ","))
        return out

    tx = text(raw_tables["transactions"])
    tx["is_return"] = np.where(raw_tables["transactions"]["is_return"], "ja", "nein")
    tx = tx.rename(columns={"customer_id": "Kunde", "timestamp": "Datum", "amount": "Betrag"})
    tx.to_csv(folder / "umsaetze.csv", sep=";", index=False)
    text(raw_tables["subscriptions"]).to_csv(folder / "subscriptions.csv", sep=";", index=False)
    products = raw_tables["products"].copy()
    products["price"] = products["price"].map(lambda v: f"{v:g}".replace(".", ","))
    products.to_csv(folder / "products.csv", sep=";", index=False)
    (folder / "mapping.toml").write_text("""
[csv]
delimiter = ";"
decimal = ","
date_format = "%d/%m/%Y %H:%M:%S"

[tables.customers]
derive = "first_activity"

[tables.transactions]
file = "umsaetze.csv"
[tables.transactions.columns]
customer_id = "Kunde"
timestamp = "Datum"
amount = "Betrag"
[tables.transactions.values.is_return]
"ja" = true
"nein" = false
""")


def test_a_mapped_export_is_read_and_mapped_on_the_workers(raw_tables, tmp_path, client,
                                                           data_reads):
    _export(raw_tables, tmp_path)
    source = data_source(None, tmp_path / "mapping.toml")
    data = prepare_dask(source, client, npartitions=3)
    target = resolve_target(data.facts)
    cfg = FeatureConfig()
    as_ofs = training_as_ofs(data.facts, cfg, target)[-2:]
    frame, specs = data.frame(as_ofs, cfg, target, labelled=True)
    assert data_reads == []
    local = prepare(load_crm(source))  # the customers table derived from the whole data
    assert data.facts == DataFacts.of(local)
    assert target == resolve_target(local) and specs == feature_specs(local)
    assert frame["customer_id"].str.startswith("K-").all() and len(frame)
    pd.testing.assert_frame_equal(
        frame, _sorted(build_training_frame(local, as_ofs, cfg, target)), check_exact=True)


@pytest.mark.slow
def test_dask_engine_trains_as_well_as_the_local_engine(mid_demo_folder, project, client):
    """Same data, same settings: XGBoost's distributed training makes as good a model."""
    from churn_risk.jobs.train import run as train
    from churn_risk.training.config import TrainConfig

    cfg = TrainConfig(search=SearchSpace(max_depth=(3,)), propensity=False, figures=False)
    local = train(mid_demo_folder, cfg, engine="pandas", project_dir=project)
    distributed = train(mid_demo_folder, cfg, engine="dask", scheduler=client.scheduler.address,
                        project_dir=project)
    import mlflow
    from scipy.stats import spearmanr

    assert mlflow.get_run(distributed.run_id).data.params["engine"] == "dask"
    assert len(distributed.split.test) == len(local.split.test)
    # As good within the test snapshot's sampling noise (Hanley & McNeil's standard error of
    # the AUC), and ranking the same customers alike.
    y = local.split.test["churned"].to_numpy()
    auc = local.metrics["test_roc_auc"]
    churned, stayed = y.sum(), len(y) - y.sum()
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    se = np.sqrt((auc * (1 - auc) + (churned - 1) * (q1 - auc * auc)
                  + (stayed - 1) * (q2 - auc * auc)) / (churned * stayed))
    assert abs(distributed.metrics["test_roc_auc"] - auc) <= 2 * se, (auc, se)
    rows = local.split.test
    assert spearmanr(local.bundle.predict(rows)["churn_probability"],
                     distributed.bundle.predict(rows)["churn_probability"]).statistic >= 0.9
