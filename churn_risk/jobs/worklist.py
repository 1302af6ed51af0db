"""`churn worklist`: whom each channel contacts, with what, within a budget, channel capacity
and contact pressure; written for CRM import and appended to the ledger."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from churn_risk.features.io import DataSourceLike, as_source
from churn_risk.features.lifecycle import PreparedData
from churn_risk.jobs.common import (
    CHAMPION_URI,
    learn_from_outcomes,
    prepared,
    registered_bundle,
)
from churn_risk.serving.worklist import Worklist


class WorklistSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    as_of: pd.Timestamp
    budget: float = Field(ge=0)
    channel: str | None = None
    capacity: int | None = Field(None, ge=0)
    contact_gap_days: int = Field(30, ge=0)
    out: Path | None = None  # default: worklists/worklist-<as-of>[-<channel>].csv
    ledger: Path = Path("worklists/ledger.parquet")
    actions: Path | None = None
    model: str = CHAMPION_URI
    columns: str | None = None  # readable | codes; default: by the extension (`export_form`)
    page_base_url: str | None = None  # default: $CHURN_PAGE_BASE_URL, else localhost:3000

    @property
    def out_path(self) -> Path:
        return self.out or Path("worklists") / (
            f"worklist-{self.as_of:%Y-%m-%d}{'-' + self.channel if self.channel else ''}.csv")


@dataclass(frozen=True)
class WorklistResult:
    worklist: Worklist
    out: Path
    ledger: Path
    target_description: str
    columns: str  # the form the list was written in: readable | codes


def run(source: DataSourceLike, settings: WorklistSettings, prep: PreparedData | None = None,
        progress=None) -> WorklistResult:
    from churn_risk.errors import UsageError
    from churn_risk.features.contract import CHANNELS
    from churn_risk.jobs.score import log_given_out, with_provenance
    from churn_risk.models.portfolio import load_catalogue, with_measured_success
    from churn_risk.serving.batch import check_output_path, score_portfolio
    from churn_risk.serving.export import export_form, write_export
    from churn_risk.serving.worklist import (
        WorklistRules,
        append_to_ledger,
        build_worklist,
        read_ledger,
        recently_contacted,
    )
    from churn_risk.training.tracking import configure_tracking

    if settings.channel is not None and settings.channel not in CHANNELS:
        raise UsageError(f"--channel {settings.channel!r} is not a channel; use one of "
                         f"{', '.join(CHANNELS)}")
    out = settings.out_path
    check_output_path(out)
    form = export_form(out, settings.columns, settings.page_base_url)
    configure_tracking()
    bundle, name, version = registered_bundle(settings.model)
    if settings.actions is not None:
        catalogue = load_catalogue(settings.actions)
        bundle.policy = replace(bundle.policy, actions=with_measured_success(
            catalogue, bundle.info.get("measured_success", {})))
    learn_from_outcomes(bundle, source)
    prep = prepared(source, prep)
    scored = with_provenance(score_portfolio(source, settings.as_of, bundle, name, version,
                                             prep=prep, progress=progress), source)
    contacted = recently_contacted(prep, read_ledger(settings.ledger), settings.as_of,
                                   settings.contact_gap_days)
    stored = as_source(source)
    if stored.store:  # and the actions channels reported (`Store.contacted`)
        from churn_risk.features.store import Store

        with Store(stored.location) as store:
            contacted |= store.contacted(None, settings.as_of - pd.Timedelta(
                days=settings.contact_gap_days), settings.as_of)
    rules = WorklistRules(budget=settings.budget, channel=settings.channel,
                          capacity=settings.capacity, contact_gap_days=settings.contact_gap_days)
    result = build_worklist(bundle, scored.reset_index(drop=True), rules, contacted)
    write_export(result.rows, out, bundle, form, prep.customers)
    given = scored.set_index("customer_id").loc[result.rows["customer_id"]].reset_index()
    given["recommended_action"] = result.rows["recommended_action"].to_numpy()
    log_given_out(given, source, "worklist")
    append_to_ledger(settings.ledger, result, settings.as_of)
    return WorklistResult(result, out, settings.ledger, bundle.target.description,
                          form.columns.value)
