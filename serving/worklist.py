"""Retention worklists: whom each channel contacts, with what, within a budget.

A worklist takes the scored portfolio (`ChurnBundle.score`: probabilities, value, driver-group
contributions, propensities), picks each customer's best action (restricted to one channel when
asked), and fills the list by expected profit:

- only actions that pay (expected profit > 0);
- the budget: an action is taken while its cost fits in what is left (cheaper ones further down
  the list may still fit);
- channel capacity: at most `capacity` customers per channel;
- contact pressure: a customer contacted in the last `contact_gap_days` days, by an earlier
  worklist (the ledger) or by a campaign (the `campaigns` table), is given to no channel, so no
  customer is given to two channels within that many days.

Each worklist is appended to the ledger (atomically, nothing already stored is lost), which the
next worklist reads for contact pressure.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from churn_risk.features.io import write_frame
from churn_risk.features.lifecycle import PreparedData
from churn_risk.features.store import SCORE_SUMMARY
from churn_risk.models.bundle import ChurnBundle
from churn_risk.models.portfolio import NO_ACTION

LEDGER_COLUMNS = ("customer_id", "channel", "action", "assigned_at")


@dataclass(frozen=True)
class WorklistRules:
    budget: float
    channel: str | None = None
    #: Most customers per channel (None: no limit).
    capacity: int | None = None
    contact_gap_days: int = 30

    def __post_init__(self) -> None:
        if self.budget < 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")
        if self.capacity is not None and self.capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {self.capacity}")
        if self.contact_gap_days < 0:
            raise ValueError(f"contact gap must be >= 0 days, got {self.contact_gap_days}")


@dataclass(frozen=True)
class Worklist:
    rows: pd.DataFrame  # ranked: one row per customer to contact
    excluded_recent_contact: int  # customers left out by contact pressure
    candidates: int  # customers with an action that pays
    spent: float

    @property
    def expected_profit(self) -> float:
        return float(self.rows["expected_profit"].sum()) if len(self.rows) else 0.0


def best_actions(bundle: ChurnBundle, scored: pd.DataFrame, channel: str | None = None,
                 require_profit: bool = True) -> pd.DataFrame:
    """Each customer's best action from `bundle.score` output (its `group_*` and
    `propensity_*` columns), among the catalogue's actions of `channel` when given."""
    policy = bundle.policy
    if channel is not None:
        policy = replace(policy, actions=tuple(a for a in policy.actions if a.channel == channel))
    groups = scored[[c for c in scored.columns if c.startswith("group_")]]
    groups.columns = [c[len("group_"):] for c in groups.columns]
    return bundle.recommend(scored, groups, policy, require_profit)


def recently_contacted(prep: PreparedData, ledger: pd.DataFrame | None, as_of: pd.Timestamp,
                       gap_days: int) -> set[str]:
    """Customer ids (as strings) contacted in `[as_of - gap_days, as_of)` by a worklist of the
    ledger or by a campaign."""
    start = as_of - pd.Timedelta(days=gap_days)
    ids: set[str] = set()
    if ledger is not None and len(ledger):
        at = pd.to_datetime(ledger["assigned_at"])
        ids |= set(ledger.loc[(at >= start) & (at < as_of), "customer_id"].astype(str))
    if prep.has("campaigns"):
        campaigns = prep.events["campaigns"]
        at = pd.to_datetime(campaigns["timestamp"])
        ids |= set(campaigns.loc[(at >= start) & (at < as_of), "customer_id"].astype(str))
    return ids


def build_worklist(
    bundle: ChurnBundle,
    scored: pd.DataFrame,
    rules: WorklistRules,
    contacted: set[str] = frozenset(),
) -> Worklist:
    """Rank customers by expected profit and fill the list within budget, capacity and contact
    pressure. `scored`: `bundle.score` output with `customer_id`."""
    actions = best_actions(bundle, scored, rules.channel)
    carried = ["customer_id", "churn_probability", "risk_band", "lifetime_value",
               "value_at_risk", "quadrant"]
    carried[1:1] = [c for c in ("prediction_id",) if c in scored]  # from a store
    # What the probability is of travels with every row of the list (see `batch._score_rows`).
    carried += [c for c in ("target", "horizon_days", "target_description") if c in scored]
    # ... and where it comes from (`jobs.score.with_provenance`).
    carried += [c for c in ("features_as_of", "scored_at", "data_watermark", "model_name",
                            "model_version") if c in scored]
    table = pd.concat([scored[carried], actions], axis=1)
    table = table.loc[(table["recommended_action"] != NO_ACTION)
                      & (table["expected_profit"] > 0)]
    return fill_worklist(bundle, table, rules, contacted)


def fill_worklist(bundle: ChurnBundle, table: pd.DataFrame, rules: WorklistRules,
                  contacted: set[str] = frozenset()) -> Worklist:
    """Fill the list from candidates that pay (`customer_id`, `recommended_action`,
    `action_channel`, `action_cost`, `expected_profit`, ...): the most expected profit first,
    within the budget and each channel's capacity, none recently contacted."""
    candidates = len(table)
    recent = table["customer_id"].astype(str).isin(contacted).to_numpy()
    table = table.loc[~recent].sort_values("expected_profit", ascending=False, kind="stable")

    cost = table["action_cost"].to_numpy(dtype=float)
    channel = table["action_channel"].to_numpy(dtype=object)
    keep = np.zeros(len(table), dtype=bool)
    left = float(rules.budget)
    per_channel: dict[str, int] = {}
    for i in range(len(table)):
        if cost[i] > left + 1e-9:
            continue
        if rules.capacity is not None and per_channel.get(channel[i], 0) >= rules.capacity:
            continue
        keep[i] = True
        left -= cost[i]
        per_channel[channel[i]] = per_channel.get(channel[i], 0) + 1
        if left <= 0:
            break
    rows = table.loc[keep].reset_index(drop=True)
    rows.insert(0, "rank", np.arange(1, len(rows) + 1))
    rows["action_label"] = [bundle.policy.action_label(a) for a in rows["recommended_action"]]
    return Worklist(rows, int(recent.sum()), candidates, float(rules.budget) - left)


#: Columns of a channel's worklist candidates (`channel_candidates`; the store's
#: `worklist_candidates`): whom the channel could contact with its best action that pays.
CANDIDATE_COLUMNS = ("channel", "customer_id", "recommended_action", "action_channel",
                     "action_cost", "expected_profit", "churn_probability", "risk_band",
                     "value_at_risk", "segment", "region")


def channel_candidates(state) -> pd.DataFrame:
    """For each channel, each customer's best action among that channel's catalogue actions
    that pays (`best_actions`), from a scored snapshot (`ScoringState`): what the home page's
    worklists fill from, as `churn worklist --channel` would."""
    from churn_risk.features.contract import CHANNELS

    bundle = state.bundle
    groups = bundle.group_contributions(pd.DataFrame(state.contributions))
    scored = pd.DataFrame({
        "churn_probability": state.probability,
        "horizon_margin": [p[0] for p in state.portfolio],
        "lifetime_value": [p[1] for p in state.portfolio],
        **{f"propensity_{f}": state.propensity[:, j] for j, f in enumerate(bundle.families)},
        **{f"group_{g}": groups[g].to_numpy() for g in groups.columns}})
    scored["horizon_margin"] = scored["horizon_margin"].astype(float)
    scored["lifetime_value"] = scored["lifetime_value"].astype(float)
    summary = pd.DataFrame(state.summary_rows(), columns=list(SCORE_SUMMARY))
    frames = []
    for channel in CHANNELS:
        if not any(a.channel == channel for a in bundle.policy.actions):
            continue
        best = best_actions(bundle, scored, channel)
        pays = (best["recommended_action"] != NO_ACTION) & (best["expected_profit"] > 0)
        if not pays.any():
            continue
        frames.append(pd.DataFrame({
            "channel": channel, "customer_id": [str(i) for i in np.asarray(state.ids)[pays]],
            "recommended_action": best.loc[pays, "recommended_action"].to_numpy(),
            "action_channel": best.loc[pays, "action_channel"].to_numpy(),
            "action_cost": best.loc[pays, "action_cost"].to_numpy(dtype=float),
            "expected_profit": best.loc[pays, "expected_profit"].to_numpy(dtype=float),
            "churn_probability": summary.loc[pays.to_numpy(), "churn_probability"].to_numpy(),
            "risk_band": summary.loc[pays.to_numpy(), "risk_band"].to_numpy(),
            "value_at_risk": summary.loc[pays.to_numpy(), "value_at_risk"].to_numpy(),
            "segment": summary.loc[pays.to_numpy(), "segment"].to_numpy(),
            "region": summary.loc[pays.to_numpy(), "region"].to_numpy()}))
    if not frames:
        return pd.DataFrame(columns=list(CANDIDATE_COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(CANDIDATE_COLUMNS)]


#: Candidates kept per channel (`top_candidates`): a page's list, within any budget, is filled
#: from the most expected profit down, and no channel works through more in a day.
TOP_CANDIDATES = 5_000


def top_candidates(parts: list[pd.DataFrame | None], keep: int = TOP_CANDIDATES) -> pd.DataFrame:
    """The `keep` candidates of most expected profit per channel among `parts` (chunks of a
    portfolio), so a whole portfolio's candidates never sit in memory at once."""
    frames = [p for p in parts if p is not None and len(p)]
    if not frames:
        return pd.DataFrame(columns=list(CANDIDATE_COLUMNS))
    both = pd.concat(frames, ignore_index=True)
    both = both.sort_values(["channel", "expected_profit", "customer_id"],
                            ascending=[True, False, True], kind="stable")
    return both.groupby("channel", sort=False).head(keep).reset_index(drop=True)


def read_ledger(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    return pd.read_parquet(path)


def append_to_ledger(path: Path, worklist: Worklist, as_of: pd.Timestamp) -> None:
    new = pd.DataFrame({
        "customer_id": worklist.rows["customer_id"].astype(str),
        "channel": worklist.rows["action_channel"].astype(str),
        "action": worklist.rows["recommended_action"].astype(str),
        "assigned_at": pd.Timestamp(as_of),
    })
    old = read_ledger(path)
    ledger = pd.concat([old, new], ignore_index=True) if old is not None else new
    write_frame(ledger[list(LEDGER_COLUMNS)], path)


def compare_targeting(bundle: ChurnBundle, scored: pd.DataFrame, true_churn: np.ndarray,
                      true_lifetime_value: np.ndarray, budget: float, seed: int = 0
                      ) -> pd.DataFrame:
    """Spend one retention budget three ways and measure the value each keeps, by the truth:
    the worklist (expected profit), the highest churn probabilities first, and random order.
    A contacted customer keeps `true churn probability × true lifetime value × the action's
    success rate` in expectation. Growth actions are left out: they retain nothing."""
    retention = replace(bundle.policy, actions=tuple(
        a for a in bundle.policy.actions if a.kind == "retention"))
    retention_bundle = replace(bundle, policy=retention)
    kept_per_customer = np.asarray(true_churn, float) * np.asarray(true_lifetime_value, float)

    def outcome(name: str, picked: np.ndarray, success: np.ndarray, cost: np.ndarray) -> dict:
        kept = float((kept_per_customer[picked] * success).sum())
        return {"strategy": name, "customers": int(picked.size), "spent": float(cost.sum()),
                "value_retained": kept, "net": kept - float(cost.sum())}

    rows = []
    worklist = build_worklist(retention_bundle, scored, WorklistRules(budget=budget))
    position = pd.Index(scored["customer_id"].astype(str)).get_indexer(
        worklist.rows["customer_id"].astype(str))
    rows.append(outcome("worklist (expected profit)", position,
                        worklist.rows["action_success_rate"].to_numpy(),
                        worklist.rows["action_cost"].to_numpy()))
    any_action = best_actions(retention_bundle, scored, require_profit=False)
    has_action = (any_action["recommended_action"] != NO_ACTION).to_numpy()
    orders = {
        "highest churn probability": np.argsort(-scored["churn_probability"].to_numpy(),
                                                kind="stable"),
        "random": np.random.default_rng(seed).permutation(len(scored)),
    }
    cost_all = any_action["action_cost"].to_numpy(dtype=float)
    success_all = any_action["action_success_rate"].to_numpy(dtype=float)
    for name, order in orders.items():
        order = order[has_action[order]]
        within = np.cumsum(cost_all[order]) <= budget
        picked = order[within]
        rows.append(outcome(name, picked, success_all[picked], cost_all[picked]))
    return pd.DataFrame(rows)
