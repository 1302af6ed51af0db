"""The `churn` command: one subcommand per thing a user does."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from churn_risk.runtime import configure_offline
from churn_risk.serving.export import DEFAULT_PAGE_BASE_URL, PAGE_BASE_URL_ENV, Columns

app = typer.Typer(
    name="churn",
    help="Churn-risk scoring: CRM data → point-in-time features → models → scores with reasons.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True, soft_wrap=True)

DEFAULT_DATA = Path("demo-data")
DEFAULT_STORE_FILE = "churn-store.db"


class Engine(StrEnum):
    pandas = "pandas"
    dask = "dask"


DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Folder of Parquet/CSV tables, or a SQLAlchemy URL (e.g. sqlite:///crm.db); "
             "default: the mapping file's source, else demo-data.",
    ),
]
MappingOpt = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        help="Data-source file (TOML) mapping an export's files, columns, values, CSV dialect "
             "and date format to the data contract (see the README).",
    ),
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="The CRM store (a SQLAlchemy URL, filled by `churn store load`), instead of "
             "--data; default when neither is given: sqlite:///churn-store.db if that file is "
             "in the working folder, else the folder demo-data.",
    ),
]
TargetOpt = Annotated[
    str | None,
    typer.Option("--target", help="Churn definition: labels (the company's labels table), "
                 "subscription_end or no_purchase; default: labels when the data hold them, "
                 "else subscription_end with subscriptions, else no_purchase."),
]
HorizonOpt = Annotated[
    int | None,
    typer.Option("--horizon-days", min=1, max=3660,
                 help="The period the churn probability covers (default 90; required with "
                      "--target labels: the period the company's churned flag covers)."),
]
LapseOpt = Annotated[
    int | None,
    typer.Option("--lapsed-after-days", min=1,
                 help="Purchases only: a customer silent this long is a former customer (not "
                      "scored); default: chosen from the gaps between purchases."),
]
EngineOpt = Annotated[
    Engine, typer.Option("--engine", help="pandas (one process) or dask (partitioned by customer).")
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="Dask scheduler address; default: a LocalCluster."),
]


@app.callback()
def _start() -> None:
    configure_offline()
    _stop_cleanly_on_sigterm()


def _stop_cleanly_on_sigterm() -> None:
    """SIGTERM ends a command like Ctrl-C does: context managers run, so an MLflow run is
    marked FAILED instead of staying RUNNING (kill -9 leaves it RUNNING: the next `churn train`
    closes it, `tracking.close_dead_runs`)."""
    import signal

    def interrupt(_number, _frame) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (an embedding caller)
        signal.signal(signal.SIGTERM, interrupt)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


@app.command("generate-data")
def generate_data(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the tables to.")] = (
        DEFAULT_DATA
    ),
    customers: Annotated[int, typer.Option("--customers", min=10)] = 20_000,
    months: Annotated[int, typer.Option("--months", min=6)] = 36,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    start: Annotated[str, typer.Option("--start", help="First month of the data.")] = "2023-01-01",
    end: Annotated[str | None, typer.Option(
        "--end", help="Instead of --start: the data end on this day (ISO date), or 'now' (live "
                      "data, as a CRM holds them at this moment).")] = None,
    drift: Annotated[list[str] | None, typer.Option(
        "--drift", help="Simulate drift from a month on, KIND:YYYY-MM (repeatable): "
                        "delivery (a worsening delivery partner: late, lost and damaged "
                        "deliveries much more frequent), price (a competitor's price "
                        "pressure: price perception falls) or competitor (a competitor wins "
                        "customers of one region whatever their drivers: the features barely "
                        "move, the model's ranking worsens); recorded in ground_truth/.")] = None,
) -> None:
    """Write realistic demo CRM tables (and a separate ground_truth/ folder) to OUT."""
    from churn_risk.demo import write_demo
    from churn_risk.demo.simulation import parse_drift
    from churn_risk.errors import UsageError

    drifts = {}
    for text in drift or []:
        try:
            kind, month = parse_drift(text)
        except ValueError as exc:
            raise UsageError(f"--drift: {exc}") from None
        drifts[kind] = month

    moment = None
    if end is not None:
        from churn_risk.features.live import live_now

        moment = live_now() if end == "now" else _parse_date(end, "--end")
    if drifts:  # a month outside the data is refused before any work
        import pandas as pd

        from churn_risk.demo.simulation import drift_months, first_month
        from churn_risk.demo.state import calendar

        try:
            drift_months(drifts, calendar(pd.Timestamp(first_month(months, start, moment)),
                                          months))
        except ValueError as exc:
            raise UsageError(f"--drift: {exc}") from None
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("Simulating months", total=months)
        demo = write_demo(
            out, customers=customers, months=months, seed=seed, fmt=fmt, start=start,
            end=moment, progress=lambda done, total: progress.update(task, completed=done + 1),
            drifts=drifts or None,
        )
    console.print(_tables_table(f"Demo CRM data in {out} (seed {seed})", demo.tables))
    console.print(
        f"Ground truth (for evaluation only, never read by features): {Path(out) / 'ground_truth'}"
        f"  [{time.perf_counter() - started:.1f} s]"
    )


def _source(data: str | None, mapping: Path | None = None, store: str | None = None):
    """The data source the options name: `--store`, or `--data` through `--mapping`."""
    from churn_risk.errors import UsageError
    from churn_risk.features.io import DataSource, data_source
    from churn_risk.features.store import DEFAULT_STORE, check_store_url

    if mapping is not None and str(mapping) in ("", "."):  # an MLproject's empty parameter
        mapping = None
    data, store = data or None, store or None
    if store is not None:
        if data is not None or mapping is not None:
            raise UsageError("--store and --data/--mapping name two sources: give one (the "
                             "store holds the tables already mapped to the contract)")
        return DataSource(check_store_url(store), store=True)
    if data is None and mapping is None and Path(DEFAULT_STORE_FILE).exists():
        return DataSource(DEFAULT_STORE, store=True)
    return data_source(data, mapping, default=str(DEFAULT_DATA))


@app.command()
def validate(data: DataOpt = None, mapping: MappingOpt = None, store: StoreOpt = None
             ) -> None:
    """Check every table in DATA against the data contract; exit 1 with a report if any fails.
    With --mapping, the tables are shown as the mapping makes them."""
    source = _source(data, mapping, store)
    crm = _load(source)
    console.print(_tables_table(f"{source}: valid", crm.tables))
    if source.mapping is not None:
        for name, frame in crm.tables.items():
            console.print(f"[bold]{name}[/bold] (first rows, as mapped)")
            console.print(frame.head(3).to_string(index=False, max_colwidth=24), markup=False,
                          highlight=False)
    if crm.attributes:
        console.print(
            "Customer attributes used as features: "
            + ", ".join(f"{k} ({v})" for k, v in crm.attributes.items())
        )


def _tables_table(title: str, tables: dict) -> Table:
    table = Table(title=title)
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("columns")
    for name, frame in tables.items():
        table.add_row(name, f"{len(frame):,}", ", ".join(map(str, frame.columns)))
    return table


def _load(source):
    """Read and validate (bad data raise `DataContractError`: `main` prints the report and
    exits 1 before anything runs)."""
    from churn_risk.features.validation import load_crm

    return load_crm(source)


def _prepare(source):
    """`_load`, prepared for the feature code."""
    from churn_risk.features.lifecycle import prepare

    return prepare(_load(source))


@app.command()
def features(
    as_of: Annotated[str, typer.Option("--as-of", help="Date the features are computed as of "
                                       "(YYYY-MM-DD).")],
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the rows to a .parquet or .csv file.")
    ] = None,
    engine: EngineOpt = Engine.pandas,
    scheduler: SchedulerOpt = None,
    target: TargetOpt = None,
    lapsed_after_days: LapseOpt = None,
) -> None:
    """Build point-in-time lifecycle features for every current customer as of a date (who is
    a customer follows --target's rule)."""
    from churn_risk.features.config import FeatureConfig
    from churn_risk.features.io import write_frame
    from churn_risk.features.labels import check_scoring_date, resolve_target
    from churn_risk.features.lifecycle import feature_specs, prepare

    cfg = FeatureConfig()
    as_of_ts = _parse_date(as_of, "--as-of")
    source = _source(data, mapping, store)
    if engine is Engine.dask:  # read, validated and computed per partition on the workers
        from churn_risk.features.dask_engine import dask_client, prepare_dask

        with dask_client(scheduler) as client:
            on_workers = prepare_dask(source, client)
            check_scoring_date(on_workers.facts, as_of_ts)
            who = resolve_target(on_workers.facts, target, None, lapsed_after_days,
                                 horizon_given=True)
            started = time.perf_counter()
            frame, specs = on_workers.frame([as_of_ts], cfg, who)
    else:
        from churn_risk.features.snapshots import build_snapshot

        prep = prepare(_load(source))
        check_scoring_date(prep, as_of_ts)
        who = resolve_target(prep, target, None, lapsed_after_days, horizon_given=True)
        started = time.perf_counter()
        frame, specs = build_snapshot(prep, as_of_ts, cfg, who), feature_specs(prep, cfg)
    elapsed = time.perf_counter() - started
    if out is not None:
        write_frame(frame, out)
    print_feature_summary(frame, specs, as_of_ts, elapsed, out)


def _parse_date(value: str, option: str):
    """An ISO 8601 day; anything else is refused (`DateError`, exit 2), never guessed."""
    from churn_risk.features.dates import parse_day

    return parse_day(value, option)


def print_feature_summary(frame, specs, as_of, elapsed: float, out: Path | None) -> None:
    """One line per driver group: how many features, which, and how much is missing."""
    by_group: dict[str, list] = {}
    for spec in specs:
        by_group.setdefault(spec.group, []).append(spec)
    table = Table(title=f"Lifecycle features as of {as_of:%Y-%m-%d}: {len(frame):,} customers")
    table.add_column("driver group")
    table.add_column("features", justify="right")
    table.add_column("actionable")
    table.add_column("missing", justify="right")
    table.add_column("examples (median)")
    for group, group_specs in by_group.items():
        names = [s.name for s in group_specs]
        missing = frame[names].isna().to_numpy().mean() if len(frame) else 0.0
        examples = []
        for s in group_specs[:3]:
            if s.kind == "numeric" and len(frame):
                examples.append(f"{s.name}={frame[s.name].median():.3g}")
            else:
                examples.append(s.name)
        table.add_row(
            group,
            str(len(group_specs)),
            "yes" if group_specs[0].actionable else "no",
            f"{missing:.0%}",
            ", ".join(examples),
        )
    console.print(table)
    where = f"; written to {out}" if out is not None else ""
    console.print(f"{len(specs)} features in {elapsed:.1f} s{where}")


@app.command()
def snapshots(
    out: Annotated[Path, typer.Option("--out", help=".parquet or .csv file to write.")],
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    first: Annotated[str | None, typer.Option("--first", help="First as-of date.")] = None,
    last: Annotated[str | None, typer.Option("--last", help="Last as-of date.")] = None,
    target: TargetOpt = None,
    horizon_days: HorizonOpt = None,
    lapsed_after_days: LapseOpt = None,
) -> None:
    """Stack labelled snapshots (features + churn and adoption labels) for training: the
    company's label dates for --target labels, else month starts."""
    from churn_risk.features.config import FeatureConfig
    from churn_risk.features.io import write_frame
    from churn_risk.features.labels import resolve_target
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.snapshots import CHURN_LABEL, build_training_frame, training_as_ofs

    cfg = FeatureConfig()
    first = None if first is None else f"{_parse_date(first, '--first'):%Y-%m-%d}"
    last = None if last is None else f"{_parse_date(last, '--last'):%Y-%m-%d}"
    prep = prepare(_load(_source(data, mapping, store)))
    chosen = resolve_target(prep, target, horizon_days, lapsed_after_days)
    as_ofs = training_as_ofs(prep, cfg, chosen, first, last)
    console.print(f"Target: {chosen.description}")
    with _progress() as progress:
        task = progress.add_task("Building snapshots", total=len(as_ofs))
        frame = build_training_frame(
            prep, as_ofs, cfg, chosen,
            progress=lambda done, total: progress.update(task, completed=done)
        )
    write_frame(frame, out)
    table = Table(title=f"Training frame → {out}")
    table.add_column("as_of")
    table.add_column("customers", justify="right")
    table.add_column("churn rate", justify="right")
    for as_of, rows in frame.groupby("as_of"):
        table.add_row(f"{as_of:%Y-%m-%d}", f"{len(rows):,}", f"{rows[CHURN_LABEL].mean():.1%}")
    console.print(table)


ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="TOML file with training settings.")
]


def _step_reporter(progress: Progress):
    tasks: dict[str, object] = {}

    def step(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return step


@app.command()
def train(
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    target: TargetOpt = None,
    horizon_days: HorizonOpt = None,
    lapsed_after_days: LapseOpt = None,
    engine: EngineOpt = Engine.pandas,
    scheduler: SchedulerOpt = None,
) -> None:
    """Train the churn and propensity models on labelled snapshots; track and register in
    MLflow. The churn definition (target) is printed, logged and stored with the model."""
    from churn_risk.jobs import train as job
    from churn_risk.training.config import load_config
    from churn_risk.training.tracking import configure_tracking

    cfg = load_config(config if config is not None and str(config) not in ("", ".") else None)
    overrides = {k: v for k, v in (("kind", target), ("horizon_days", horizon_days),
                                   ("lapsed_after_days", lapsed_after_days)) if v is not None}
    if overrides:
        cfg = cfg.model_copy(update={"target": cfg.target.model_validate(
            {**cfg.target.model_dump(), **overrides})})
    source = _source(data, mapping, store)
    configure_tracking()  # an unreachable tracking store stops here, before any work
    # pandas: bad data stop here, with the report, before any run; dask reads on its workers
    prep = _prepare(source) if engine is Engine.pandas else None
    _print_training(_train(job, source, cfg, prep, engine.value, scheduler), source)


def _train(job, source, cfg, prep, engine: str = "pandas", scheduler: str | None = None):
    with _progress() as progress:
        return job.run(source, cfg, prep, engine=engine, scheduler=scheduler,
                       step=_step_reporter(progress))


def _print_training(result, source) -> None:
    for note in result.notes:
        console.print(f"• {note}")
    print_metrics(result.metrics, f"Test metrics ({result.split.method} split)")
    console.print(
        f"Registered [bold]churn-risk[/bold] version {result.version} (run {result.run_id})."
        f" Promote it with: churn promote{_data_args(source)}"
    )
    console.print(f"MLflow UI: {result.tracking.ui_command}")


def _data_args(source) -> str:
    """The options that name `source` again, for the next command printed."""
    import shlex

    args = f" --data {shlex.quote(source.location)}"
    if source.mapping is not None:
        args += f" --mapping {shlex.quote(str(source.mapping.path))}"
    return args


HEADLINE = (
    ("roc_auc", "ROC-AUC"),
    ("oracle_roc_auc", "oracle ROC-AUC (true probabilities)"),
    ("pr_auc", "PR-AUC"),
    ("log_loss", "log loss"),
    ("brier", "Brier score"),
    ("ece", "expected calibration error"),
    ("top_decile_lift", "top-decile lift"),
    ("explanation_fidelity_top3", "true driver in top-3 reasons (top decile)"),
    ("propensity_precision_at_3", "next-product precision@3"),
    ("explain_ms_per_customer", "ms per explained customer"),
    ("value_spearman", "value model: rank correlation with realised spend"),
    ("value_run_rate_spearman", "run-rate estimate: rank correlation with realised spend"),
    ("value_mae", "value model: mean absolute error of horizon spend"),
    ("value_run_rate_mae", "run-rate estimate: mean absolute error of horizon spend"),
    ("rows", "customers in the test snapshot"),
)


def print_metrics(metrics: dict[str, float], title: str, prefix: str = "test_") -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, label in HEADLINE:
        if f"{prefix}{key}" in metrics:
            table.add_row(label, f"{metrics[prefix + key]:.4g}")
    for key in sorted(metrics):
        if key.startswith(f"{prefix}propensity_auc_") and "truth_rows" not in key:
            family = key[len(f"{prefix}propensity_auc_"):]
            oracle = metrics.get(f"{prefix}oracle_propensity_auc_{family}")
            suffix = f" (oracle {oracle:.3f})" if oracle is not None else ""
            table.add_row(f"propensity AUC: {family}", f"{metrics[key]:.3f}{suffix}")
    console.print(table)


@app.command()
def promote(
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Promote even if worse or of another target: a "
                           "recorded human decision.")
    ] = False,
    version: Annotated[
        str | None, typer.Option("--version", help="Version to promote (default: newest).")
    ] = None,
) -> None:
    """Make the newest version @champion if it has the champion's target and is at least as good
    on the same held-out rows. A refusal exits with code 3 (nothing changed)."""
    from churn_risk.jobs import promote as job

    _print_promotion(job.run(_source(data, mapping, store),
                             job.PromoteSettings(version=version, force=force)))


def _print_promotion(result) -> None:
    """What `churn promote` decided; a refusal is exit code 3 (`PromotionRefused`)."""
    from churn_risk.errors import PromotionRefused

    if result.judged_on is not None:
        console.print(f"(judged on {result.judged_on})")
    if result.refused:
        raise PromotionRefused(result.decision.reason)
    style = "green" if result.decision.promoted else "yellow"
    console.print(f"[{style}]{result.decision.reason}[/{style}]")


@app.command()
def evaluate(
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    model: Annotated[
        str, typer.Option("--model", help="Model URI to evaluate.")
    ] = "models:/churn-risk@champion",
) -> None:
    """Evaluate a registered model on the newest labelled snapshot (its own test customers
    when it was trained on a customer holdout)."""
    from churn_risk.jobs import evaluate as job

    result = job.run(_source(data, mapping, store), job.EvaluateSettings(model=model))
    print_metrics(result.metrics, f"{model} on {result.judged_on}", prefix="")
    console.print(f"MLflow run {result.run_id}: {result.ui_command}")


MonitorModelOpt = Annotated[
    str, typer.Option("--model", help="Model URI to monitor.")
]
PsiAlertOpt = Annotated[float, typer.Option(
    "--psi-alert", min=0.0, help="Retraining is due when a feature's population stability "
    "index reaches this (0.1: watch, 0.25: a real shift).")]
MissingAlertOpt = Annotated[float, typer.Option(
    "--missing-alert", min=0.0, max=1.0, help="... or a feature's missing share moves by at "
    "least this (0.10 = 10 percentage points).")]
ScorePsiAlertOpt = Annotated[float, typer.Option(
    "--score-psi-alert", min=0.0, help="... or the churn probability's PSI reaches this.")]
AucDropOpt = Annotated[float, typer.Option(
    "--auc-drop", min=0.0, max=1.0, help="... or the realised ROC-AUC of matured predictions "
    "falls this far below the test ROC-AUC at training (needs the store's prediction log).")]


def _monitor_settings(model, as_of, psi_alert, missing_alert, score_psi_alert, auc_drop):
    from churn_risk.jobs import monitor as job

    return job.MonitorSettings(
        model=model, as_of=None if as_of is None else _parse_date(as_of, "--as-of"),
        psi_alert=psi_alert, missing_alert=missing_alert, score_psi_alert=score_psi_alert,
        auc_drop=auc_drop)


@app.command()
def monitor(
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    model: MonitorModelOpt = "models:/churn-risk@champion",
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Date of the portfolio (default: now for a store, else the day after "
                        "the data end).")] = None,
    psi_alert: PsiAlertOpt = 0.25,
    missing_alert: MissingAlertOpt = 0.10,
    score_psi_alert: ScorePsiAlertOpt = 0.25,
    auc_drop: AucDropOpt = 0.05,
) -> int:
    """Watch the model: per feature the drift (PSI) and missing-share change of the current
    portfolio against the model's training reference, the score distribution's shift, the
    prediction log's scores and reasons by month (--store) and the realised accuracy of matured
    predictions; logged to MLflow. Exit 0 when stable, 4 when retraining is due (a scheduler
    can act on it)."""
    from churn_risk.jobs import monitor as job

    settings = _monitor_settings(model, as_of, psi_alert, missing_alert, score_psi_alert,
                                 auc_drop)
    result = job.run(_source(data, mapping, store), settings)
    _print_monitor(result, settings)
    return job.RETRAINING_DUE if result.verdict.retraining_due else 0


def _print_monitor(result, settings) -> None:
    report = result.report
    model = f"{settings.model} (version {result.version})"
    if report is not None:
        t = report.features
        shown = t.loc[(t["psi_reference"] >= 0.1)
                      | (t["missing_change"].abs() >= settings.missing_alert)]
        shown = shown if len(shown) >= 10 else t.head(10)
        season = report.same_month_as_of
        table = Table(title=f"Drift of {model}: portfolio as of {report.as_of} "
                            f"({report.rows:,} customers) vs training reference "
                            f"{report.reference_as_of} ({report.reference_rows:,})"
                            + (f" and the same month, {season}" if season else ""))
        table.add_column("feature", no_wrap=True,
                         min_width=max((len(f) for f in shown["feature"]), default=7))
        table.add_column("driver group")
        table.add_column("PSI", justify="right")
        if season:
            table.add_column("vs ref.", justify="right")
            table.add_column("vs month", justify="right")
        table.add_column("missing (ref. → now)", justify="right")
        for r in shown.itertuples():
            style = ("bold red" if r.psi >= settings.psi_alert
                     else "yellow" if r.psi >= 0.1 else "")
            judged = f"[{style}]{r.psi:.3f}[/{style}]" if style else f"{r.psi:.3f}"
            both = [f"{r.psi_reference:.3f}", f"{r.psi_same_month:.3f}"] if season else []
            table.add_row(r.feature, r.group, judged, *both,
                          f"{r.missing_reference:.0%} → {r.missing_current:.0%}")
        console.print(table)
        if season:
            console.print("PSI: the lower of the two, so a change that comes back every year "
                          "is not taken for drift.")
        console.print(f"{len(t) - len(shown)} more features below PSI 0.1. Score distribution: "
                      f"PSI {report.score_psi:.3f}, mean churn probability "
                      f"{report.score_reference_mean:.1%} at training, "
                      f"{report.score_current_mean:.1%} now.")
    if len(result.log_scores):
        table = Table(title="Prediction log by month of features_as_of")
        for column in ("month", "predictions", "mean", "p50", "p90"):
            table.add_column(column, justify="right")
        table.add_column("most frequent first reason")
        mix = result.reason_mix.set_index("month")
        for r in result.log_scores.itertuples():
            shares = mix.loc[r.month].drop(["(none)", "(other)"], errors="ignore")
            top = (f"{shares.idxmax()} ({shares.max():.0%})" if len(shares) and shares.max() > 0
                   else "")
            table.add_row(r.month, f"{r.predictions:,}", f"{r.mean:.1%}", f"{r.p50:.1%}",
                          f"{r.p90:.1%}", top)
        console.print(table)
    if result.realised is not None:
        console.print(f"Realised: {result.realised}")
    style = "bold red" if result.verdict.retraining_due else "green"
    console.print(f"[{style}]{escape(result.verdict.text)}[/{style}]")
    console.print(f"MLflow run {result.run_id}: {result.ui_command}")


@app.command()
def retrain(
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(
        "--force/--no-force", help="Train (and try to promote) even when the monitor says "
                                   "stable; the promotion rule still applies.")] = False,
    psi_alert: PsiAlertOpt = 0.25,
    missing_alert: MissingAlertOpt = 0.10,
    score_psi_alert: ScorePsiAlertOpt = 0.25,
    auc_drop: AucDropOpt = 0.05,
) -> int:
    """The scheduled path: monitor the champion, and when retraining is due (or --force) train
    a challenger and promote it by the usual rule. Exit 0: stable (nothing trained) or the
    challenger promoted; 3: the challenger was not better, the champion is left alone. Without
    a champion, the first model is trained and promoted."""
    from churn_risk.jobs import monitor as monitor_job
    from churn_risk.jobs import promote as promote_job
    from churn_risk.jobs import train as train_job
    from churn_risk.models.pyfunc import resolve_model
    from churn_risk.training.config import load_config
    from churn_risk.training.tracking import configure_tracking

    source = _source(data, mapping, store)
    configure_tracking()
    prep = _prepare(source)
    settings = _monitor_settings("models:/churn-risk@champion", None, psi_alert, missing_alert,
                                 score_psi_alert, auc_drop)
    try:
        resolve_model(settings.model)
    except LookupError:
        console.print("No champion yet: training the first model.")
    else:
        result = monitor_job.run(source, settings, prep)
        _print_monitor(result, settings)
        if not result.verdict.retraining_due and not force:
            console.print("Stable: nothing to retrain (--force trains anyway).")
            return 0
    cfg = load_config(config if config is not None and str(config) not in ("", ".") else None)
    _print_training(_train(train_job, source, cfg, prep), source)
    _print_promotion(promote_job.run(source, promote_job.PromoteSettings(), prep))
    return 0


@app.command()
def serve(
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 3000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback by "
                                      "default).")] = "127.0.0.1",
    insecure_dev: Annotated[
        bool, typer.Option("--insecure-dev", help="Serve without API keys: a local demo on a "
                           "loopback address only.")
    ] = False,
    public_metrics: Annotated[
        bool, typer.Option("--public-metrics", help="Let /metrics be read without a key (it "
                           "holds no customer data).")
    ] = False,
    max_body_mb: Annotated[
        float, typer.Option("--max-body-mb", min=0.01, help="Largest request body accepted.")
    ] = 4.0,
    poll_seconds: Annotated[
        float, typer.Option("--poll-seconds", min=0.1, help="How often to check the champion "
                            "alias.")
    ] = 5.0,
) -> None:
    """Serve models:/churn-risk@champion and the latest snapshot of DATA over HTTP (BentoML).

    Stops every server process on Ctrl-C or SIGTERM (within 10 s); exits non-zero with the
    reason when the port is taken or the data or the champion cannot be loaded."""
    import signal

    from churn_risk.errors import UsageError
    from churn_risk.serving import auth, launch
    from churn_risk.serving.middleware import loopback

    if insecure_dev and not loopback(host):
        raise UsageError(f"--insecure-dev serves customer data without keys: only on a loopback "
                         f"address (e.g. --host 127.0.0.1), not {host}")
    source = _source(data, mapping, store)
    users = os.environ.get("CHURN_USERS_FILE") or None
    if users is not None:  # a bad users file: the reason now, not a server that never starts
        from churn_risk.serving.people import PeopleFileError, load_people

        try:
            load_people(users)
        except PeopleFileError as exc:
            raise UsageError(str(exc)) from None
    try:
        auth.required_keys(insecure_dev=insecure_dev, people=users is not None)
    except auth.NoKeysConfigured as exc:
        raise UsageError(str(exc)) from None
    if launch.port_in_use(host, port):
        raise UsageError(f"port {port} on {host} is in use (another churn serve?): stop it or "
                         "choose another --port")
    env = launch.server_env(source, insecure=insecure_dev, poll_seconds=poll_seconds,
                            public_metrics=public_metrics, host=host,
                            max_body_bytes=int(max_body_mb * 1024 * 1024))
    process, base = launch.start(env, host=host, port=port, quiet=False)
    stopping = {"signal": None}

    def on_signal(number, _frame) -> None:
        stopping["signal"] = number
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        keys = "no API key: --insecure-dev" if insecure_dev else "API keys required"
        console.print(f"Starting on {base} ({keys}; Ctrl-C stops)")
        launch.wait_ready(base, process, timeout=float("inf"))
        console.print(f"[green]Ready[/green] at {base} (docs at {base}/docs)")
        process.wait()
        raise UsageError(f"the server stopped on its own (exit code {process.returncode})")
    except launch.ServerFailed as exc:
        from churn_risk.errors import DataError

        raise DataError(f"the service cannot start: {exc}") from None
    except KeyboardInterrupt:
        console.print("Stopping the server …")
    finally:
        launch.stop(process, timeout=8.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


users_app = typer.Typer(help="People and rights: named users who log in to the customer "
                         "pages, and integrations with API keys of their own (a users file, "
                         "CHURN_USERS_FILE for `churn serve`).", no_args_is_help=True)
app.add_typer(users_app, name="users")
UsersFileOpt = Annotated[Path, typer.Option(
    "--file", envvar="CHURN_USERS_FILE", help="The users file (TOML; written 0600).")]


def _people(file: Path):
    from churn_risk.errors import UsageError
    from churn_risk.serving.people import PeopleFileError, load_people

    try:
        return load_people(file if file.exists() else None)
    except PeopleFileError as exc:
        raise UsageError(str(exc)) from None


def _check_name(name: str) -> None:
    from churn_risk.errors import UsageError
    from churn_risk.serving.people import _NAME

    if not _NAME.match(name):
        raise UsageError(f"name {name!r}: 1-64 letters, digits, '_' or '-', e.g. alice")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user name people log in with.")],
    role: Annotated[str, typer.Option(
        "--role", help="account_manager, retention_lead or admin.")],
    file: UsersFileOpt = Path("users.toml"),
    display_name: Annotated[str | None, typer.Option(
        "--display-name", help="How pages name them, e.g. 'Alice Martin'.")] = None,
    segment: Annotated[list[str] | None, typer.Option(
        "--segment", help="An account manager's portfolio: customers of this segment "
                          "(repeatable; none: every customer).")] = None,
    region: Annotated[list[str] | None, typer.Option(
        "--region", help="... and of this region (repeatable).")] = None,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input (scripts) instead "
                                 "of asking twice.")] = False,
) -> None:
    """Add a user, or replace one of that name (a new password ends their sessions). The
    password is stored as an Argon2id hash, never as given."""
    import sys
    from dataclasses import replace

    from churn_risk.errors import UsageError
    from churn_risk.serving.people import ROLES, Portfolio, User, hash_password, save_people

    _check_name(name)
    if role not in ROLES or role == "integrator":
        raise UsageError(f"--role: one of account_manager, retention_lead, admin (got {role!r};"
                         " an integrator gets a key: `churn users key`)")
    if (segment or region) and role != "account_manager":
        raise UsageError(f"--segment/--region: only an account_manager has a portfolio; a "
                         f"{role} sees every customer")
    people = _people(file)
    password = (sys.stdin.readline().rstrip("\n") if password_stdin else
                typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    try:
        hashed = hash_password(password)
    except ValueError as exc:
        raise UsageError(f"password: {exc}") from None
    user = User(name, role, hashed, display_name,
                Portfolio(frozenset(segment or ()), frozenset(region or ())))
    save_people(file, replace(people, users={**people.users, name: user}))
    console.print(f"{'Replaced' if name in people.users else 'Added'} {name} ({role}, "
                  f"{user.portfolio.describe()}) in {file}")


@users_app.command("key")
def users_key(
    name: Annotated[str, typer.Argument(help="The integration, e.g. crm-outbox.")],
    file: UsersFileOpt = Path("users.toml"),
    role: Annotated[str, typer.Option(
        "--role", help="integrator (the API: score, explain, events, outcomes) or admin.")
    ] = "integrator",
) -> None:
    """Make an API key for an integration (a new one replaces its old key). The key is printed
    once; the file keeps only its SHA-256."""
    from dataclasses import replace

    from churn_risk.errors import UsageError
    from churn_risk.serving.people import Integration, key_digest, new_key, save_people

    _check_name(name)
    if role not in ("integrator", "admin"):
        raise UsageError(f"--role: integrator or admin (got {role!r})")
    people = _people(file)
    key = new_key()
    integration = Integration(name, role, key_digest(key))
    save_people(file, replace(people, integrations={**people.integrations, name: integration}))
    console.print(f"API key of {name} ({role}), shown once: send it as "
                  "'Authorization: Bearer <key>'")
    print(key)


@users_app.command("list")
def users_list(file: UsersFileOpt = Path("users.toml")) -> None:
    """The users and integrations of the file (no secrets)."""
    people = _people(file)
    table = Table(title=f"People and integrations in {file}")
    for column in ("name", "kind", "role", "sees"):
        table.add_column(column)
    for user in sorted(people.users.values(), key=lambda u: u.name):
        table.add_row(user.name + (f" ({user.display_name})" if user.display_name else ""),
                      "user", user.role, user.portfolio.describe())
    for integration in sorted(people.integrations.values(), key=lambda i: i.name):
        table.add_row(integration.name, "integration", integration.role, "the API")
    console.print(table)


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="A user or integration.")],
    file: UsersFileOpt = Path("users.toml"),
) -> None:
    """Remove a user (their sessions end) or an integration (its key stops working)."""
    from churn_risk.errors import UsageError
    from churn_risk.serving.people import People, save_people

    people = _people(file)
    if name not in people.users and name not in people.integrations:
        raise UsageError(f"{name!r} is neither a user nor an integration in {file}")
    save_people(file, People({k: v for k, v in people.users.items() if k != name},
                             {k: v for k, v in people.integrations.items() if k != name}))
    console.print(f"Removed {name} from {file}")


store_app = typer.Typer(help="The CRM store: a SQL database (SQLite or PostgreSQL) every "
                         "command can read with --store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


StoreUrlOpt = Annotated[str, typer.Option(
    "--store", help="SQLAlchemy URL of the store (created if absent), e.g. "
                    "postgresql+psycopg://user@host/crm.")]


@store_app.command("load")
def store_load(
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreUrlOpt = f"sqlite:///{DEFAULT_STORE_FILE}",
) -> None:
    """Validate the tables of --data (through --mapping) as a whole data set and add them to
    the store in one transaction; records it holds already are not stored twice."""
    from churn_risk.features.store import check_store_url
    from churn_risk.jobs import store_load as job

    source = _source(data, mapping)
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("storing records", total=None)
        result = job.run(source, check_store_url(store), progress=lambda done, total: (
            progress.update(task, completed=done, total=total)))
    _print_written(f"{source} → {store}", result, store, started)


@store_app.command("score")
def store_score(
    store: StoreUrlOpt = f"sqlite:///{DEFAULT_STORE_FILE}",
    model: Annotated[str, typer.Option(
        "--model", help="The registered model the service follows.")
    ] = "models:/churn-risk@champion",
) -> None:
    """Score the whole portfolio as of now into the store (scores, reasons, actions), where
    `churn serve --store` reads them by customer id: a server started on a scored portfolio is
    ready in seconds. The service re-scores on its own schedule (CHURN_RESCORE_SECONDS)."""
    from churn_risk.features.store import check_store_url
    from churn_risk.jobs import store_score as job

    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("scoring customers", total=None)
        run = job.run(check_store_url(store), model, progress=lambda done, total: (
            progress.update(task, completed=done, total=total)))
    console.print(f"{run['customers']:,} customers scored as of {run['as_of']:%Y-%m-%d %H:%M:%S} "
                  f"UTC by {run['model_name']} version {run['model_version']} into {store} in "
                  f"{time.perf_counter() - started:.1f} s")


@app.command()
def ingest(
    data: Annotated[str, typer.Option("--data", help="A folder of new records (files named "
                                      "after their tables), or one table's file.")],
    mapping: MappingOpt = None,
    table: Annotated[str | None, typer.Option(
        "--table", help="The table of a single file (default: the file's name).")] = None,
    store: StoreUrlOpt = f"sqlite:///{DEFAULT_STORE_FILE}",
) -> None:
    """Add new CRM records to the store: validated against the contract and against what the
    store holds (a ticket may refer to a stored customer), all of the batch or nothing;
    records stored before are not stored twice."""
    from churn_risk.features.store import check_store_url
    from churn_risk.jobs import ingest as job

    source = _source(data, mapping)
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("storing records", total=None)
        written = job.run(source, check_store_url(store), table, progress=lambda done, total: (
            progress.update(task, completed=done, total=total)))
    _print_written(f"{source} → {store}", written, store, started)


def _print_written(title: str, written, store_url: str, started: float) -> None:
    from churn_risk.features.io import shown_url
    from churn_risk.features.store import Store

    with Store(store_url) as store:
        counts, newest = store.counts(), store.watermark()
    table = Table(title=title)
    for column in ("table", "received", "new", "already stored", "in the store"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, received in written.received.items():
        table.add_row(name, f"{received:,}", f"{written.stored[name]:,}",
                      f"{written.duplicates[name]:,}", f"{counts[name]:,}")
    console.print(table)
    newest = "-" if newest is None else f"{newest:%Y-%m-%d %H:%M:%S} UTC"
    console.print(f"Stored in {time.perf_counter() - started:.1f} s; newest record stored at "
                  f"{newest}. Read it with --store {shown_url(store_url)}")


outcomes_app = typer.Typer(help="What channels did with the scores given out, and the "
                            "success rates learned from it.", no_args_is_help=True)
app.add_typer(outcomes_app, name="outcomes")


@outcomes_app.command("load")
def outcomes_load(
    file: Annotated[Path, typer.Argument(help="A CSV or Parquet file of outcome reports: "
                                              "prediction_id, response, occurred_at [, "
                                              "customer_id, action, channel, stayed, "
                                              "outcome_id]; later, whether customers stayed: "
                                              "prediction_id, stayed.")],
    store: StoreUrlOpt = f"sqlite:///{DEFAULT_STORE_FILE}",
) -> None:
    """Store outcome reports as `POST /outcomes` does: each quotes the prediction_id of a score
    given out (a batch row's or an answer's), all of the file or nothing; reports stored before
    are not stored twice."""
    from churn_risk.features.io import shown_url
    from churn_risk.features.store import check_store_url
    from churn_risk.jobs import outcomes as job

    received, stored = job.load(file, check_store_url(store))
    console.print(f"{received:,} outcome report(s) read from {file}: {stored:,} new, "
                  f"{received - stored:,} stored before, in {shown_url(store)}")


@outcomes_app.command("rates")
def outcomes_rates(
    store: StoreUrlOpt = f"sqlite:///{DEFAULT_STORE_FILE}",
    model: Annotated[str, typer.Option(
        "--model", help="The registered model whose catalogue and campaigns are the start.")
    ] = "models:/churn-risk@champion",
) -> None:
    """Each action's success rate: the model's (catalogue prior updated by campaigns) and after
    the store's matured outcome reports, with the 95% interval. The service and batch scoring
    from the store use the learned rates (the service from its next portfolio scoring)."""
    from churn_risk.features.store import check_store_url
    from churn_risk.jobs import outcomes as job

    learned = job.rates(check_store_url(store), model)
    table = Table(title=f"Success rates (share of would-be churners kept) — {model}")
    for column in ("action", "model's rate", "reports", "learned rate", "95% interval"):
        table.add_column(column, justify="left" if column == "action" else "right")
    for r in learned:
        interval = "-" if r.low is None else f"{r.low:.0%} to {r.high:.0%}"
        table.add_row(r.action, f"{r.before:.1%}", f"{r.reports:,}", f"{r.rate:.1%}", interval)
    console.print(table)


campaigns_app = typer.Typer(help="Campaign management: measure what past campaigns did.",
                             no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")


@campaigns_app.command("evaluate")
def campaigns_evaluate(
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    horizon_days: Annotated[int, typer.Option("--horizon-days", min=1, max=3660,
                                              help="Retention is measured over this many days "
                                                   "after the send date.")] = 90,
    confidence: Annotated[
        float, typer.Option("--confidence", min=0.5, max=0.999, help="Interval coverage.")
    ] = 0.95,
    segment: Annotated[
        list[str] | None, typer.Option("--segment", help="Customer column to break results "
                                       "down by (repeatable).")
    ] = None,
    uplift: Annotated[
        bool, typer.Option("--uplift/--no-uplift", help="Fit the uplift model (who is "
                           "persuadable) when the control groups are large enough.")
    ] = True,
) -> None:
    """Retention uplift of each campaign (treatment vs control, with confidence intervals, per
    segment and per offer), the success rates the next-best actions use, and an uplift model;
    all logged to MLflow."""
    from churn_risk.jobs import campaigns as job

    settings = job.CampaignSettings(horizon_days=horizon_days, confidence=confidence,
                                    segments=tuple(segment or ("segment",)), uplift=uplift)
    result = job.run(_source(data, mapping, store), settings)
    if result.no_uplift:
        console.print(f"[yellow]No uplift model: {result.no_uplift}[/yellow]")
    for level in ("campaign", "offer"):
        rows = result.evaluation.summary_rows(level)
        table = Table(title=f"Retention uplift per {level}")
        for column in (rows[0] if rows else {}):
            table.add_column(column)
        for row in rows:
            table.add_row(*row.values())
        console.print(table)
    for offer, r in result.success_rates.items():
        console.print(f"• success rate of actions with offer [bold]{offer}[/bold]: "
                      f"{r['rate']:.0%} (CI {r['low']:.0%} to {r['high']:.0%}, "
                      f"{r['n_control']:,} controls)")
    if result.uplift is not None:
        console.print("• uplift model (T-learner, cross-fitted): " + ", ".join(
            f"{k} {v:.4g}" for k, v in result.uplift.qini.items()))
        for note in result.uplift.notes:
            console.print(f"  {note}")
    console.print(f"Logged to MLflow run {result.run_id}. MLflow UI: {result.ui_command}")


ModelOpt = Annotated[
    str, typer.Option("--model", help="Model URI (a registered version or alias).")
]


ColumnsOpt = Annotated[
    Columns | None,
    typer.Option("--columns", help="readable: headers and values in words, for people and CRM "
                 "import wizards; codes: the code's column names and values, for pipelines. "
                 "Default: readable for .csv, codes for .parquet. Every column: docs/fields.md."),
]
PageBaseUrlOpt = Annotated[
    str | None,
    typer.Option("--page-base-url", help="Where the service's pages are: each row's page_url is "
                 f"<this>/customers/<id>. Default: ${PAGE_BASE_URL_ENV}, else "
                 f"{DEFAULT_PAGE_BASE_URL} (churn serve's default)."),
]


@app.command()
def worklist(
    as_of: Annotated[str, typer.Option("--as-of", help="Date of the worklist (features as of).")],
    budget: Annotated[float, typer.Option("--budget", min=0, help="Money to spend on actions.")],
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    channel: Annotated[
        str | None, typer.Option("--channel", help="Only this channel's actions: sales, "
                                 "contact_center, web, service or campaign.")
    ] = None,
    capacity: Annotated[
        int | None, typer.Option("--capacity", min=0, help="Most customers per channel.")
    ] = None,
    contact_gap_days: Annotated[
        int, typer.Option("--contact-gap-days", min=0,
                          help="No customer is given to a channel within this many days of "
                               "another contact (worklist or campaign).")
    ] = 30,
    out: Annotated[
        Path | None, typer.Option("--out", help="CSV or Parquet for CRM import (default: "
                                  "worklists/worklist-<as-of>[-<channel>].csv).")
    ] = None,
    ledger: Annotated[
        Path, typer.Option("--ledger", help="Earlier worklists, read for contact pressure and "
                           "appended to.")
    ] = Path("worklists/ledger.parquet"),
    actions: Annotated[
        Path | None, typer.Option("--actions", help="Another action catalogue (TOML).")
    ] = None,
    model: ModelOpt = "models:/churn-risk@champion",
    columns: ColumnsOpt = None,
    page_base_url: PageBaseUrlOpt = None,
) -> None:
    """Rank customers by the expected profit of their next-best action, within a budget,
    channel capacity and contact-pressure rules; write the list for CRM import."""
    from churn_risk.jobs import worklist as job

    settings = job.WorklistSettings(
        as_of=_parse_date(as_of, "--as-of"), budget=budget, channel=channel, capacity=capacity,
        contact_gap_days=contact_gap_days, out=out, ledger=ledger, actions=actions, model=model,
        columns=columns, page_base_url=page_base_url)
    with _progress() as progress:
        task = progress.add_task("scoring the portfolio", total=None)
        result = job.run(_source(data, mapping, store), settings, progress=lambda done, total: (
            progress.update(task, completed=done, total=total)))
    worklist = result.worklist
    table = Table(title=f"Worklist {settings.as_of:%Y-%m-%d}"
                  + (f" ({channel})" if channel else "")
                  + f": churn probabilities are the {result.target_description}")
    for column in ("channel", "action", "customers", "cost", "expected profit"):
        table.add_column(column, justify="right" if column not in ("channel", "action")
                         else "left")
    rows = worklist.rows
    if len(rows):
        summary = rows.groupby(["action_channel", "recommended_action"]).agg(
            customers=("customer_id", "size"), cost=("action_cost", "sum"),
            profit=("expected_profit", "sum")).reset_index()
        for r in summary.itertuples(index=False):
            table.add_row(r.action_channel, r.recommended_action, f"{r.customers:,}",
                          f"{r.cost:,.0f}", f"{r.profit:,.0f}")
    console.print(table)
    console.print(
        f"{len(rows):,} customers, spent {worklist.spent:,.0f} of {budget:,.0f}, expected "
        f"profit {worklist.expected_profit:,.0f}; {worklist.candidates:,} customers had an "
        f"action that pays, {worklist.excluded_recent_contact:,} were left out (contacted in "
        f"the last {contact_gap_days} days). Written to {result.out} ({result.columns} columns); "
        f"ledger {result.ledger}.")


@app.command()
def score(
    out: Annotated[Path, typer.Option("--out", help="Scores file to write: .parquet or .csv.")],
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Date of the features; default: the day after the data end."),
    ] = None,
    model: Annotated[
        str, typer.Option("--model", help="Model URI to score with.")
    ] = "models:/churn-risk@champion",
    engine: EngineOpt = Engine.pandas,
    scheduler: SchedulerOpt = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Folder for the portfolio report; default: next to --out."),
    ] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1)] = 50_000,
    columns: ColumnsOpt = None,
    page_base_url: PageBaseUrlOpt = None,
) -> None:
    """Score the whole portfolio (every output field per customer) and write a portfolio report,
    logged to MLflow with the scores."""
    from churn_risk.jobs import score as job

    settings = job.ScoreSettings(
        out=out, as_of=_parse_date(as_of, "--as-of") if as_of is not None else None,
        model=model, engine=engine.value, scheduler=scheduler, report=report,
        chunk_rows=chunk_rows, columns=columns, page_base_url=page_base_url)
    with _progress() as progress:
        task = progress.add_task("Scoring customers", total=None)
        result = job.run(_source(data, mapping, store), settings, progress=lambda done, total: (
            progress.update(task, completed=done, total=total)))
    summary = result.summary
    table = Table(title=f"{summary['customers']:,} customers scored as of "
                        f"{result.features_as_of} with {result.model_name} version "
                        f"{result.version} in {result.seconds:.1f} s")
    table.add_column("quadrant")
    table.add_column("customers", justify="right")
    table.add_column("value at risk", justify="right")
    for cell_name, cell in summary["quadrants"].items():
        table.add_row(cell_name, f"{cell['customers']:,}", f"{cell['value_at_risk']:,.0f}")
    table.add_row("[bold]total[/bold]", f"{summary['customers']:,}",
                  f"{summary['total_value_at_risk']:,.0f}")
    console.print(table)
    console.print(f"Churn probability: the {result.target_description}")
    console.print(f"Mean churn probability {summary['mean_churn_probability']:.1%}; "
                  f"{summary['customers_with_an_action']:,} customers with an action worth "
                  f"{summary['total_expected_profit']:,.0f} in expected profit")
    console.print(f"Scores: {out} ({result.columns} columns; every column: docs/fields.md)")
    console.print(f"Report: {result.report}")
    console.print(f"MLflow run {result.run_id} (\"score {result.features_as_of}\"): "
                  f"{result.ui_command}")


@app.command("explain-change")
def explain_change(
    customer: Annotated[str, typer.Option("--customer", help="Customer id.")],
    from_date: Annotated[str, typer.Option("--from", help="Earlier as-of date (YYYY-MM-DD).")],
    to_date: Annotated[str, typer.Option("--to", help="Later as-of date (YYYY-MM-DD).")],
    data: DataOpt = None,
    mapping: MappingOpt = None,
    store: StoreOpt = None,
    model: Annotated[
        str, typer.Option("--model", help="Model URI to explain with.")
    ] = "models:/churn-risk@champion",
) -> None:
    """Why a customer's churn risk changed between two dates, by driver group."""
    from churn_risk.jobs import explain_change as job
    from churn_risk.serving.change import ChangeRequestError

    try:
        change, description = job.run(_source(data, mapping, store), job.ExplainChangeSettings(
            customer=customer, from_date=from_date, to_date=to_date, model=model))
    except ChangeRequestError as exc:
        option = {"customer_id": "--customer", "from_date": "--from", "to_date": "--to"}
        raise typer.BadParameter(str(exc).partition(": ")[2],
                                 param_hint=option.get(exc.field, exc.field)) from None
    table = Table(title=f"Customer {change['customer_id']}: score contributions (log-odds) by "
                        f"driver group, {change['from_date']} → {change['to_date']}")
    table.add_column("driver group")
    table.add_column(f"at {change['from_date']}", justify="right")
    table.add_column(f"at {change['to_date']}", justify="right")
    table.add_column("change", justify="right")
    for g in change["groups"]:
        style = "red" if g["change"] > 0.005 else "blue" if g["change"] < -0.005 else ""
        table.add_row(g["driver_group"], f"{g['contribution_from']:+.3f}",
                      f"{g['contribution_to']:+.3f}", f"[{style}]{g['change']:+.3f}[/]"
                      if style else f"{g['change']:+.3f}")
    table.add_section()
    table.add_row("score (margin)", f"{change['margin_from']:+.3f}", f"{change['margin_to']:+.3f}",
                  f"{change['margin_change']:+.3f}")
    console.print(table)
    features = Table(title="Largest feature-level changes")
    for column in ("feature", "value at from", "value at to", "change"):
        features.add_column(column, justify="left" if column == "feature" else "right")
    def shown(value) -> str:
        return "missing" if value is None else f"{value:.4g}" if isinstance(value, float) else (
            str(value))

    for f in change["features"][:5]:
        features.add_row(f["label"], shown(f["value_from"]), shown(f["value_to"]),
                         f"{f['change']:+.3f}")
    console.print(features)
    console.print(
        f"Churn probability {change['churn_probability_from']:.1%} ({change['risk_band_from']})"
        f" → {change['churn_probability_to']:.1%} ({change['risk_band_to']}): "
        f"{change['probability_change'] * 100:+.1f} points (the {description})"
    )


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo data.")] = DEFAULT_DATA,
    customers: Annotated[int, typer.Option("--customers", min=10)] = 20_000,
    months: Annotated[int, typer.Option("--months", min=6)] = 36,
    seed: Annotated[int, typer.Option("--seed")] = 42,
) -> None:
    """The main job end to end on demo data: generate → validate → features → train (tracked in
    MLflow) → promote the champion → serve and call it."""
    from churn_risk.jobs import demo as job

    with _progress() as progress:
        job.run(job.DemoSettings(out=out, customers=customers, months=months, seed=seed),
                _DemoPrinter(progress))


class _DemoPrinter:
    """Prints each stage of `churn demo` as the job reports it (`jobs.demo.DemoReport`)."""

    def __init__(self, progress: Progress):
        self.bars = progress
        self.tasks: dict[str, object] = {}

    def stage(self, number: int, title: str) -> None:
        from churn_risk.jobs.demo import STAGES

        console.rule(f"{number}/{len(STAGES)} {title}")

    def progress(self, what: str, done: int, total: int) -> None:
        if what not in self.tasks:
            self.tasks[what] = self.bars.add_task(what, total=total)
        self.bars.update(self.tasks[what], completed=done, total=total)

    def generated(self, demo, seconds: float) -> None:
        console.print(_tables_table("Demo CRM data", demo.tables))
        console.print(f"Ground truth (for evaluation only, never read by features): "
                      f"ground_truth/  [{seconds:.1f} s]")

    def validated(self, source, crm) -> None:
        console.print(_tables_table(f"{source}: valid", crm.tables))

    def stored(self, written, store_url: str) -> None:
        from churn_risk.features.io import shown_url

        console.print(f"Loaded into the store {shown_url(store_url)}: "
                      f"{sum(written.stored.values()):,} records")

    def features(self, frame, specs, as_of, seconds: float) -> None:
        print_feature_summary(frame, specs, as_of, seconds, None)

    def trained(self, result, source) -> None:
        _print_training(result, source)

    def promoted(self, result) -> None:
        if result.judged_on is not None:
            console.print(f"(judged on {result.judged_on})")
        style = "green" if result.decision.promoted else "yellow"
        suffix = " The current champion is served." if result.refused else ""
        console.print(f"[{style}]{escape(result.decision.reason)}{suffix}[/{style}]")

    def served(self, served) -> None:
        import json

        from churn_risk.jobs.demo import ASKED

        answer = served.answer
        console.print(f"Service ready at {served.base_url}, live on the store (demo mode: "
                      "--insecure-dev, no API key)")
        former = len(answer["unknown_customer_ids"])
        console.print(f"The riskiest and the safest of the first {ASKED} customers"
                      + (f" ({former} of them are former customers)" if former else "") + ":")
        console.print_json(json.dumps({**answer, "results": served.two,
                                       "unknown_customer_ids": []}))
        customer = served.before["customer_id"]
        console.print(f"A new ticket for customer {customer}, sent to POST /events:")
        console.print_json(json.dumps(served.event))
        console.print(f"stored: {served.accepted['stored']} record(s); the first answer that "
                      f"includes it came {served.seconds:.2f} s later:")
        table = Table(title=f"Customer {customer}: {served.after['target']['description']}")
        for column in ("", "before the ticket", "after the ticket"):
            table.add_column(column)
        before, after = served.before, served.after
        table.add_row("features as of", before["features_as_of"], after["features_as_of"])
        table.add_row("churn probability", f"{before['churn_probability']:.1%}",
                      f"{after['churn_probability']:.1%}")
        table.add_row("risk band", before["risk_band"], after["risk_band"])
        for k in range(3):
            table.add_row(f"reason {k + 1}", *(_reason_text(r["top_reasons"], k)
                                                for r in (before, after)))
        table.add_row("recommended action", *((r["recommended_action"] or {}).get("label", "none")
                                               for r in (before, after)))
        console.print(table)
        console.print("The channel reports the recommendation taken, to POST /outcomes "
                      "(quoting the answer's prediction_id):")
        console.print_json(json.dumps(served.outcome))
        console.print(f"stored: {served.outcome_answer['stored']} report(s)")
        sim, learned = served.simulated, served.learned
        console.print(
            f"Simulated matured reports: of the {sim['reports']:,} customers given a retention "
            f"action ({sim['actions']} different) as of {sim['as_of']} (a horizon ago), "
            f"{sim['taken']:,} took it; whether each stayed is what the data say, except that a "
            f"would-be churner who took it stayed with probability {sim['truth']:.0%} (the "
            f"demo's known truth). POST /outcomes stored {sim['stored']:,}.")
        interval = ("" if learned.low is None
                    else f" (95% interval {learned.low:.0%} to {learned.high:.0%})")
        console.print(f"Success rate of {sim['action']}: {learned.before:.0%} before the "
                      f"reports, {learned.rate:.0%}{interval} after "
                      f"{learned.reports:,} reports; true {sim['truth']:.0%}.")
        console.print(f"  source: {learned.source}")
        console.print(f"Portfolio home (risk matrix, lists, search): {served.base_url}/")
        console.print(f"Account-manager page: {served.base_url}/customers/{customer}")
        console.print(f"API documentation: {served.base_url}/docs")
        if sys.stdin.isatty():
            self.bars.stop()  # no live bars under the prompt
            console.input("[bold]Press Enter to stop the service.[/bold]")


def _reason_text(reasons: list[dict], k: int) -> str:
    if k >= len(reasons):
        return "-"
    r = reasons[k]
    value = r["value"]
    if isinstance(value, float):
        value = f"{value:,.0f}" if value.is_integer() else f"{value:,.2f}"
    return f"{r['label']} = {value} ({r['contribution']:+.2f})"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (testable without a subprocess).

    Expected failures (`errors.ChurnError`: bad options or files, data that cannot do what is
    asked, a refused promotion) and contract violations print a short message, no traceback,
    and exit with their documented code (`errors.py`); anything else is a bug and shows one."""
    from churn_risk.errors import ChurnError
    from churn_risk.features.validation import DataContractError

    try:
        result = app(args=argv, prog_name="churn", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted")
        return 130
    except typer.exceptions.TyperException as exc:  # usage errors: bad option values
        exc.show()
        return getattr(exc, "exit_code", 2)
    except DataContractError as exc:  # nothing downstream runs on invalid data
        err.print("[bold red]the data break the contract[/bold red]")
        err.print(str(exc), markup=False, highlight=False)
        return 1
    except ChurnError as exc:
        prefix = "refused" if exc.exit_code == 3 else "error"
        err.print(f"[bold red]{prefix}:[/bold red] {escape(str(exc))}")
        return exc.exit_code
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
