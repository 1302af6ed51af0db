"""Exports a CRM can import (`serving/export.py`): files others can read, headers and values in
words (or the codes, when asked), a link to each customer's page, the customer's name, and a
field dictionary that cannot drift from what is written.

Scored by the session's real champion (`champion_store`), from the small demo data."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from churn_risk.cli import main
from churn_risk.features.io import atomic_write, write_frame
from churn_risk.jobs.score import with_provenance
from churn_risk.models.portfolio import NO_ACTION
from churn_risk.models.pyfunc import load_bundle
from churn_risk.serving.batch import score_portfolio
from churn_risk.serving.export import (
    DICTIONARY,
    FIELDS,
    Columns,
    dictionary_markdown,
    export_form,
    export_table,
    field_of,
    readable,
    write_export,
)
from churn_risk.serving.worklist import WorklistRules, build_worklist
from churn_risk.training.tracking import MODEL_NAME, configure_tracking

from .conftest import MLFLOW_EXPORTS

REPO = Path(__file__).resolve().parents[1]
BASE = "https://crm.example.com/churn"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    before = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(before)


def no_mlflow_env(mp) -> None:
    for name in MLFLOW_EXPORTS:
        mp.setenv(name, "unset")
        mp.delenv(name)


@pytest.fixture(scope="module")
def trained(champion_project, champion_store):
    version = champion_store.train.version
    with pytest.MonkeyPatch.context() as mp:
        no_mlflow_env(mp)
        configure_tracking(champion_project)
        bundle = load_bundle(f"models:/{MODEL_NAME}/{version}")
    return SimpleNamespace(project=champion_project, version=version, bundle=bundle)


@pytest.fixture(scope="module")
def scores(demo_folder, trained):
    return with_provenance(score_portfolio(demo_folder, None, trained.bundle, MODEL_NAME,
                                           trained.version), demo_folder)


@pytest.fixture(scope="module")
def worklist_rows(trained, scores):
    return build_worklist(trained.bundle, scores, WorklistRules(budget=1e6)).rows


@pytest.fixture
def in_project(trained, monkeypatch):
    monkeypatch.chdir(trained.project)
    no_mlflow_env(monkeypatch)
    monkeypatch.delenv("CHURN_PAGE_BASE_URL", raising=False)
    configure_tracking(trained.project)
    return trained.project


@pytest.fixture(scope="module")
def named_folder(tmp_path_factory, demo_folder) -> Path:
    """The demo data with a `name` column in customers."""
    folder = tmp_path_factory.mktemp("named") / "data"
    shutil.copytree(demo_folder, folder)
    customers = pd.read_parquet(folder / "customers.parquet")
    customers["name"] = "Customer " + customers["customer_id"].astype(str)
    customers.to_parquet(folder / "customers.parquet", index=False)
    return folder


# ------------------------------------------------------------------------------ file mode


@pytest.mark.parametrize("umask_value, expected", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_get_the_mode_open_gives_not_a_private_one(tmp_path, umask, umask_value,
                                                                  expected):
    umask(umask_value)
    frame = pd.DataFrame({"customer_id": ["1"], "churn_probability": [0.2]})
    for name in ("scores.csv", "scores.parquet"):
        write_frame(frame, tmp_path / name)
        assert mode(tmp_path / name) == expected, name
    atomic_write(tmp_path / "report.html", "<!DOCTYPE html>")
    assert mode(tmp_path / "report.html") == expected
    write_frame(frame, tmp_path / "scores.csv")  # a replaced file too
    assert mode(tmp_path / "scores.csv") == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


# ------------------------------------------------------------------------------ the forms


def test_the_readable_form_speaks_words_not_codes(scores, trained):
    bundle = trained.bundle
    table = readable(export_table(scores, BASE), bundle)
    for header in ("Customer ID", "Chance of leaving", "Chance of leaving means", "Risk band",
                   "Main reason 1", "Recommended action", "Customer page"):
        assert header in table.columns, header
    codes = [s.name for s in bundle.specs] + [a.name for a in bundle.policy.actions]
    assert "survey_price_last" in {s.name for s in bundle.specs}  # the demo has that driver
    assert not table.isin(codes).any().any()
    assert not set(table.columns) & set(codes)
    assert not [c for c in table.columns if "_" in c]  # no code as a header
    labels = {s.label for s in bundle.specs}
    for i in (1, 2, 3):
        assert set(table[f"Main reason {i}"].dropna()) <= labels
    assert set(table["Recommended action"]) <= (
        {a.label for a in bundle.policy.actions} | {"No action"})
    assert (scores["recommended_action"] == NO_ACTION).any()  # "No action" was exercised
    assert set(table["Risk band"]) <= {"Low risk", "Medium risk", "High risk", "Very high risk"}
    # what the chance of leaving is a chance of: the target and its horizon, on every row
    horizon = bundle.target.horizon_days
    assert (table["Chance of leaving means"] == bundle.target.description).all()
    assert table["Chance of leaving means"].str.contains(f"within {horizon} days").all()
    assert (table["Horizon (days)"] == horizon).all()
    # the numbers are the codes form's numbers
    assert table["Chance of leaving"].tolist() == scores["churn_probability"].tolist()


def test_page_url_links_each_customer_to_their_page(scores, tmp_path, trained, monkeypatch):
    monkeypatch.delenv("CHURN_PAGE_BASE_URL", raising=False)
    assert export_form(tmp_path / "s.csv").page_base_url == "http://localhost:3000"
    monkeypatch.setenv("CHURN_PAGE_BASE_URL", "https://env.example.com/")
    assert export_form(tmp_path / "s.csv").page_base_url == "https://env.example.com"
    form = export_form(tmp_path / "s.parquet", page_base_url=BASE + "/")  # the option wins
    assert form.page_base_url == BASE and form.columns == Columns.codes
    out = write_export(scores, tmp_path / "s.parquet", trained.bundle, form)
    back = pd.read_parquet(out)
    assert back["page_url"].tolist() == [f"{BASE}/customers/{c}" for c in scores["customer_id"]]
    odd = export_table(pd.DataFrame({"customer_id": ["a/b c"]}), BASE)
    assert odd["page_url"].iloc[0] == f"{BASE}/customers/a%2Fb%20c"  # one path segment


@pytest.mark.parametrize("name", ["scores.parquet", "scores.csv"])
@pytest.mark.parametrize("columns", list(Columns))
def test_an_export_reads_back_as_written(scores, trained, tmp_path, name, columns):
    form = export_form(tmp_path / name, columns, BASE)
    out = write_export(scores, tmp_path / name, trained.bundle, form)
    expected = export_table(scores, BASE)
    if columns == Columns.readable:
        expected = readable(expected, trained.bundle)
    if name.endswith(".parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(out), expected)
    else:
        back = pd.read_csv(out, keep_default_na=False, na_values=[""])
        assert list(back.columns) == list(expected.columns)
        assert len(back) == len(expected)


def test_the_default_form_follows_the_extension(tmp_path):
    assert export_form(tmp_path / "list.csv").columns == Columns.readable
    assert export_form(tmp_path / "list.parquet").columns == Columns.codes


# ------------------------------------------------------------------------------ dictionary


def test_the_field_dictionary_is_written_from_the_one_mapping():
    assert (REPO / DICTIONARY).read_text() == dictionary_markdown(), (
        "docs/fields.md is out of date: python -m churn_risk.serving.export > docs/fields.md")
    assert "docs/fields.md" in (REPO / "README.md").read_text()


def test_every_exported_column_is_in_the_dictionary(scores, worklist_rows, trained):
    document = (REPO / DICTIONARY).read_text()
    names = pd.DataFrame({"customer_id": scores["customer_id"], "name": "x"})
    for table in (scores, worklist_rows):
        codes = export_table(table, BASE, names)
        for column in codes.columns:
            field, _ = field_of(column)  # KeyError: a column no field describes
            assert f"| `{field.code}` |" in document, column
        for header in readable(codes, trained.bundle).columns:
            assert any(f.header is not None and _matches_header(f.header, header)
                       for f in FIELDS), header
    assert len({f.code for f in FIELDS}) == len(FIELDS)
    assert len({f.header for f in FIELDS if f.header}) == len([f for f in FIELDS if f.header])


def _matches_header(pattern: str, header: str) -> bool:
    import re

    regex = re.escape(pattern)
    for name in ("i", "family", "group"):
        regex = regex.replace(re.escape("{" + name + "}"), ".+")
    return re.fullmatch(regex, header) is not None


def test_a_customer_name_is_kept_for_exports_and_never_a_feature(raw_tables):
    from churn_risk.features.lifecycle import feature_specs, prepare
    from churn_risk.features.validation import validate

    tables = dict(raw_tables)
    customers = tables["customers"].copy()
    customers["name"] = ["Ada", "Grace"] * (len(customers) // 2) + ["Ada"] * (len(customers) % 2)
    tables["customers"] = customers
    prep = prepare(validate(tables))
    assert prep.customers["name"].tolist() == customers["name"].tolist()
    assert "name" not in prep.data.attributes  # two values: would have been a category
    assert "name" not in {s.name for s in feature_specs(prep)}


# ------------------------------------------------------------------------------ the commands


def test_churn_worklist_writes_a_readable_list_with_names_and_links(in_project, named_folder,
                                                                   umask, monkeypatch, capsys):
    monkeypatch.setenv("CHURN_PAGE_BASE_URL", BASE)
    out = in_project / "lists" / "list.csv"
    assert main(["worklist", "--data", str(named_folder), "--as-of", "2024-10-01", "--budget",
                 "500", "--out", str(out), "--ledger", str(in_project / "ledger.parquet")]) == 0
    assert "(readable columns)" in " ".join(capsys.readouterr().out.split())
    assert mode(out) == 0o644 and mode(in_project / "ledger.parquet") == 0o644
    rows = pd.read_csv(out, dtype={"Customer ID": str})
    assert len(rows) and list(rows.columns[:3]) == ["Rank", "Customer ID", "Customer name"]
    assert (rows["Customer name"] == "Customer " + rows["Customer ID"]).all()
    assert (rows["Customer page"] == BASE + "/customers/" + rows["Customer ID"]).all()
    assert "recommended_action" not in rows.columns and "Recommended action" in rows.columns


def test_churn_score_writes_codes_when_asked(in_project, demo_folder, tmp_path, umask):
    out = tmp_path / "scores.csv"
    assert main(["score", "--data", str(demo_folder), "--out", str(out), "--columns", "codes",
                 "--page-base-url", BASE]) == 0
    written = pd.read_csv(out, dtype={"customer_id": str})
    assert {"customer_id", "churn_probability", "reason_1_feature", "page_url"} <= set(
        written.columns)
    assert (written["page_url"] == BASE + "/customers/" + written["customer_id"]).all()
    # the demo's customers have names: each row carries its customer's
    names = pd.read_parquet(demo_folder / "customers.parquet") if (
        demo_folder / "customers.parquet").exists() else pd.read_csv(demo_folder / "customers.csv")
    by_id = dict(zip(names["customer_id"].astype(str), names["name"], strict=True))
    assert (written["name"] == written["customer_id"].map(by_id)).all()
    assert mode(out) == 0o644
    assert mode(out.with_name("scores-report") / "report.html") == 0o644


@pytest.mark.parametrize("args, option", [
    (["--columns", "words"], "--columns"),
    (["--page-base-url", "crm.example.com"], "--page-base-url"),
])
@pytest.mark.parametrize("command", ["score", "worklist"])
def test_a_bad_export_option_is_named(in_project, demo_folder, tmp_path, capsys, command, args,
                                      option):
    extra = ["--as-of", "2024-10-01", "--budget", "5"] if command == "worklist" else []
    code = main([command, "--data", str(demo_folder), *extra, "--out",
                 str(tmp_path / "out.csv"), *args])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert code == 2 and option in text and "Traceback" not in text
    assert not (tmp_path / "out.csv").exists()
