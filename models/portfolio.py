"""From scores to decisions: customer value, the value × risk matrix and the next-best action.

Everything here is part of the bundle (fitted at training, logged with the model, loaded by batch
scoring, worklists and the service), so every channel sees the same value, quadrant and action.

Value
    `horizon_margin`: the margin the customer brings over the next horizon *if retained*: the
    value model's predicted net spend (an XGBoost regressor trained on customers who stayed)
    times the gross margin rate.
    `lifetime_value`: that margin, horizon after horizon for `lifetime_years`, kept with the
    portfolio's typical retention rate (measured at training) and discounted: what the company
    keeps if this customer does not leave now. Using the portfolio's rate, not the customer's own
    risk, keeps the risk out of the value axis of the matrix (a risky customer is not "worth
    less", they are *at risk*).
    `value_at_risk` = churn probability × lifetime value.

Risk matrix
    Four quadrants of risk × value: `protect_first` (high value, high risk), `keep` (high
    value, low risk), `grow` (low value, low risk) and `let_go` (low value, high risk). High
    risk is the API's: from the lower edge of the `high` risk band (`bundle.high_risk_from`),
    so a quadrant never calls a customer high risk whom `risk_band` does not. The value split
    is a quantile of the scored portfolio at training (or given in the config).

Next-best action
    A declared catalogue (TOML, `actions.toml` by default) maps reasons to actions with a cost
    and a channel. A retention action is eligible when its driver group raises the customer's
    risk (a positive SHAP contribution of the group) or when it names no driver group; its
    expected profit is

        churn probability × lifetime value × success rate − cost

    where the success rate (the share of would-be churners the action keeps) is the catalogue's
    prior updated by what was measured (`with_measured_success`): the relative churn reduction
    of past campaigns with the action's `offer` (treatment against control) and of the
    channels' reported outcomes (customers who took the action against comparable customers who
    declined it). A growth action (next product) is eligible for customers
    below the risk threshold and earns propensity × `gain` × success rate − cost. The action
    with the highest positive expected profit is recommended; none when no action pays.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError, model_validator

from churn_risk.errors import UsageError
from churn_risk.features.config import SETTINGS
from churn_risk.features.contract import CHANNELS, DRIVER_GROUPS

QUADRANTS: tuple[str, ...] = ("protect_first", "keep", "grow", "let_go")
QUADRANT_LABELS = {
    "protect_first": "Protect first",
    "keep": "Keep",
    "grow": "Grow",
    "let_go": "Let go",
}
NO_ACTION = "none"


class ValueSettings(BaseModel):
    model_config = SETTINGS

    #: Gross margin as a share of net spend.
    margin_rate: float = Field(0.30, gt=0, le=1)
    annual_discount_rate: float = Field(0.10, ge=0, lt=1)
    #: How far ahead lifetime value looks.
    lifetime_years: float = Field(3.0, gt=0, le=50)
    #: The currency of transactions (so of every value, cost and profit), written before
    #: amounts in charts and reports: "€", "$", "CHF ".
    currency: str = Field("€", min_length=1, max_length=8)


def money(value: float, currency: str = ValueSettings().currency) -> str:
    """An amount as people read it, the currency first: €812, €35,412, €2M, €1.25M, €12.7M,
    €2.1bn (the one money format of figures, reports and the customer page alike)."""
    value = float(value)
    sign = "-" if value < 0 else ""
    for size, suffix in ((1e9, "bn"), (1e6, "M")):
        if abs(value) >= size:
            digits = f"{abs(value) / size:,.2f}".rstrip("0").rstrip(".")
            return f"{sign}{currency}{digits}{suffix}"
    return f"{sign}{currency}{abs(value):,.0f}"


class MatrixSettings(BaseModel):
    """The value split of the matrix: absolute when given, else this quantile of the portfolio.
    (The risk split is no setting of its own: it is the `high` risk band's lower edge.)"""

    model_config = SETTINGS

    value_quantile: float = Field(0.50, ge=0, le=1)
    value_threshold: float | None = None


class Action(BaseModel):
    """One entry of the next-best-action catalogue (see `actions.toml`)."""

    model_config = SETTINGS

    name: str = Field(min_length=1)
    label: str
    channel: Literal[CHANNELS]  # type: ignore[valid-type]
    cost: float = Field(ge=0)
    #: Prior share of would-be churners the action keeps (growth: share of buyers it converts).
    success_rate: float = Field(ge=0, le=1)
    kind: Literal["retention", "growth"] = "retention"
    #: retention: the reason it answers (None: any customer at risk)
    driver_group: Literal[DRIVER_GROUPS] | None = None  # type: ignore[valid-type]
    offer: str | None = None  # the campaigns' `offer` that measures its success rate
    #: Extra cost as a share of the customer's horizon spend (e.g. a discount).
    cost_share_of_spend: float = Field(0.0, ge=0)
    gain: float = Field(0.0, ge=0)  # growth: margin of a converted next product
    #: growth: the product families it proposes (None: every family with a propensity model)
    families: tuple[str, ...] | None = None
    description: str = ""
    #: How sure the prior `success_rate` is: the standard deviation of the log churn risk ratio
    #: (0.25: the prior's 95% interval is about a factor 1.6 on the churn of treated customers).
    #: Measurements with smaller errors outweigh it; a handful of outcomes barely moves it.
    success_prior_sd: float = Field(0.25, gt=0)
    success_source: str = "our starting estimate"
    #: The rate's interval (`with_measured_success`); None: never computed (an older bundle).
    success_low: float | None = None
    success_high: float | None = None
    #: The catalogue's `success_rate` once a measurement has replaced it (learning again starts
    #: from the prior, not from the last posterior).
    success_prior: float | None = None

    def __init__(self, name: str | None = None, label: str | None = None,
                 channel: str | None = None, **kwargs) -> None:
        """Positional `name, label, channel` as well as keywords."""
        given = {k: v for k, v in (("name", name), ("label", label), ("channel", channel))
                 if v is not None}
        super().__init__(**given, **kwargs)

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data):
        if isinstance(data, dict) and isinstance(data.get("families"), list):
            data = {**data, "families": tuple(data["families"])}
        return data


#: What `with_measured_success` fills in: not settings of the catalogue.
LEARNED_KEYS = ("success_source", "success_low", "success_high", "success_prior")
ACTION_KEYS = tuple(k for k in Action.model_fields if k not in LEARNED_KEYS)
#: The confidence of every success rate's interval.
SUCCESS_CONFIDENCE = 0.95


def load_catalogue(path: str | Path | None = None) -> tuple[Action, ...]:
    """Actions from a TOML file of `[[action]]` tables (default: the packaged catalogue).
    Raises `UsageError` naming the file, the action and the key for anything wrong."""
    if path is None:
        text = resources.files("churn_risk.models").joinpath("actions.toml").read_text()
        where = "actions.toml (packaged)"
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UsageError(
                f"{where}: cannot read the action catalogue ({exc.strerror})") from None
    from churn_risk.features.io import parse_toml

    raw = parse_toml(text, where)
    unknown = sorted(set(raw) - {"action"})
    if unknown:
        raise UsageError(f"{where}: unknown top-level keys {unknown}; the catalogue is a list of "
                         "[[action]] tables")
    actions = []
    for n, entry in enumerate(raw.get("action", [])):
        learned = [k for k in LEARNED_KEYS if k in entry]
        if learned:
            raise UsageError(f"{where}: action[{n}].{learned[0]}: not a setting (it is learned "
                             "from campaigns and reported outcomes)")
        try:
            actions.append(Action.model_validate(entry))
        except ValidationError as exc:
            name = entry.get("name", n)
            raise UsageError(
                settings_error(exc, f"{where}: action {name!r}", ACTION_KEYS)) from None
    names = [a.name for a in actions]
    if len(set(names)) != len(names) or not actions:
        raise UsageError(f"{where}: needs at least one action and unique names, got {names}")
    return tuple(actions)


def settings_error(exc: ValidationError, where: str, known: tuple[str, ...] = ()) -> str:
    """A pydantic error as lines `<where>: <key>: <problem>`, with the known keys for an
    unknown one."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(file)"
        if error["type"] == "extra_forbidden":
            hint = f" (known: {', '.join(known)})" if known else ""
            lines.append(f"{where}: {key}: unknown setting{hint}")
        elif error["type"] == "missing":
            lines.append(f"{where}: {key}: required")
        else:
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {key}: {message} (got {error.get('input')!r})")
    return "\n".join(lines)


def with_measured_success(actions: tuple[Action, ...], measured: dict[str, dict],
                          reported: dict[str, dict] | None = None) -> tuple[Action, ...]:
    """The actions with success rates learned from what was measured: the posterior of the
    catalogue's prior and the measured effects, with its interval and its source.

    `measured`: per campaign `offer` (`training.campaigns.success_rates`), `reported`: per action
    name (`training.campaigns.outcome_success_rates`); each a dict with ``log_rr`` (the log of
    the measured churn risk ratio, treated over untreated) and ``log_rr_se``. On the log risk
    ratio scale, the prior is normal around log(1 - success_rate) with `success_prior_sd` and
    each measurement is a normal likelihood; the posterior is their precision-weighted mean
    (conjugate normal), so a measurement counts by its precision: a campaign with hundreds of
    controls moves the rate most of the way, a handful of outcomes barely. The rate is
    1 - exp(posterior mean), its interval 1 - exp(mean -+ z sd), clipped to [0, 1].
    Measurements without ``log_rr`` (a model trained before they were stored) are used as they
    are. Actions with nothing measured keep their prior, with the prior's interval. Learning
    again (new outcomes) starts from the catalogue's prior, kept in `success_prior`."""
    z = NormalDist().inv_cdf(0.5 + SUCCESS_CONFIDENCE / 2)
    out = []
    for action in actions:
        found = [(f"campaigns {', '.join(m.get('campaigns', []))}", m)
                 for m in [measured.get(action.offer) if action.offer else None] if m]
        found += [(f"{m['reports']:,} reported outcomes", m)
                  for m in [(reported or {}).get(action.name)] if m]
        legacy = [m for _, m in found if "log_rr" not in m and np.isfinite(m.get("rate", np.nan))]
        if legacy:
            m = legacy[0]
            out.append(action.model_copy(update={
                "success_rate": float(np.clip(m["rate"], 0.0, 1.0)),
                "success_low": m.get("low"), "success_high": m.get("high"),
                "success_source": f"measured: {', '.join(m.get('campaigns', []))} "
                                  f"({m['rate']:.0%}, CI {m.get('low', np.nan):.0%} to "
                                  f"{m.get('high', np.nan):.0%})"}))
            continue
        prior_rate = action.success_rate if action.success_prior is None else action.success_prior
        prior = float(np.log1p(-min(prior_rate, 0.99)))
        precision = 1 / action.success_prior_sd**2
        weighted = prior * precision
        for _, m in found:
            precision += 1 / m["log_rr_se"] ** 2
            weighted += m["log_rr"] / m["log_rr_se"] ** 2
        mean, sd = weighted / precision, precision**-0.5
        rate, low, high = (float(np.clip(-np.expm1(v), 0.0, 1.0))
                           for v in (mean, mean + z * sd, mean - z * sd))
        source = f"our starting estimate {prior_rate:.0%}"
        if found:
            source += (", updated by " + " and ".join(
                f"{what} (measured {m['rate']:.0%}, {m['n_treatment']:,} treated, "
                f"{m['n_control']:,} compared)" for what, m in found))
        out.append(action.model_copy(update={
            "success_rate": rate, "success_low": low, "success_high": high,
            "success_prior": prior_rate,
            "success_source": f"{source}: {rate:.0%} (95% interval {low:.0%} to {high:.0%})"}))
    return tuple(out)


@dataclass(frozen=True)
class PortfolioPolicy:
    """The fitted value, matrix and action settings that travel in the bundle."""

    value: ValueSettings = field(default_factory=ValueSettings)
    horizon_days: int = 90
    #: Share of the portfolio retained over one horizon (measured at training).
    retention_rate: float = 0.9
    risk_threshold: float = 0.1
    value_threshold: float = 0.0
    actions: tuple[Action, ...] = ()

    # ------------------------------------------------------------------ value

    def horizon_margin(self, predicted_spend: np.ndarray) -> np.ndarray:
        return self.value.margin_rate * np.maximum(np.asarray(predicted_spend, float), 0.0)

    def lifetime_factor(self) -> float:
        """Lifetime value per unit of horizon margin: sum over horizons k = 1..N of
        (retention / (1 + discount per horizon))**k."""
        periods = max(1, round(self.value.lifetime_years * 365.25 / self.horizon_days))
        discount = (1.0 + self.value.annual_discount_rate) ** (self.horizon_days / 365.25) - 1.0
        q = self.retention_rate / (1.0 + discount)
        return float(sum(q**k for k in range(1, periods + 1)))

    def lifetime_value(self, horizon_margin: np.ndarray) -> np.ndarray:
        return np.asarray(horizon_margin, float) * self.lifetime_factor()

    # ------------------------------------------------------------------ matrix

    def quadrant(self, churn_probability: np.ndarray, lifetime_value: np.ndarray) -> np.ndarray:
        high_risk = np.asarray(churn_probability) >= self.risk_threshold
        high_value = np.asarray(lifetime_value) >= self.value_threshold
        return np.where(high_value, np.where(high_risk, "protect_first", "keep"),
                        np.where(high_risk, "let_go", "grow")).astype(object)

    # ------------------------------------------------------------------ actions

    def recommend(
        self,
        churn_probability: np.ndarray,
        lifetime_value: np.ndarray,
        horizon_margin: np.ndarray,
        groups: pd.DataFrame,
        propensity: pd.DataFrame | None = None,
        require_profit: bool = True,
    ) -> pd.DataFrame:
        """The best action per customer: columns `recommended_action` (NO_ACTION when none
        pays), `action_channel`, `action_cost`, `action_success_rate`, `expected_profit` and
        `action_reason` (the driver group it answers, or the next product's family).

        `groups`: SHAP contributions summed per driver group (log-odds), one row per customer.
        `propensity`: one column per product family, for growth actions.
        `require_profit=False` picks the best eligible action even when it does not pay (to
        compare with targeting rules that ignore profit)."""
        n = len(churn_probability)
        p = np.asarray(churn_probability, float)
        ltv = np.asarray(lifetime_value, float)
        spend = np.asarray(horizon_margin, float) / max(self.value.margin_rate, 1e-12)
        if not self.actions or n == 0:
            return _no_action(n)
        profit = np.full((n, len(self.actions)), -np.inf)
        cost = np.zeros((n, len(self.actions)))
        reason = np.empty((n, len(self.actions)), dtype=object)
        for j, action in enumerate(self.actions):
            cost[:, j] = action.cost + action.cost_share_of_spend * spend
            if action.kind == "retention":
                if action.driver_group is None:
                    eligible = np.ones(n, bool)
                    reason[:, j] = None
                elif action.driver_group in groups.columns:
                    eligible = groups[action.driver_group].to_numpy() > 0
                    reason[:, j] = action.driver_group
                else:
                    continue
                gain = p * ltv * action.success_rate
            else:
                offered = propensity if propensity is not None else pd.DataFrame()
                if action.families is not None:
                    offered = offered[[f for f in offered.columns if f in action.families]]
                if offered.shape[1] == 0:
                    continue
                values = offered.to_numpy(dtype=float)
                best = np.argmax(values, axis=1)
                eligible = p < self.risk_threshold
                gain = values[np.arange(n), best] * action.gain * action.success_rate
                reason[:, j] = np.asarray(offered.columns, dtype=object)[best]
            profit[:, j] = np.where(eligible, gain - cost[:, j], -np.inf)
        choice = np.argmax(profit, axis=1)
        rows = np.arange(n)
        best_profit = profit[rows, choice]
        chosen = best_profit > 0 if require_profit else np.isfinite(best_profit)
        names = np.array([a.name for a in self.actions], dtype=object)
        channels = np.array([a.channel for a in self.actions], dtype=object)
        rates = np.array([a.success_rate for a in self.actions])
        return pd.DataFrame({
            "recommended_action": np.where(chosen, names[choice], NO_ACTION),
            "action_channel": np.where(chosen, channels[choice], None),
            "action_cost": np.where(chosen, cost[rows, choice], 0.0),
            "action_success_rate": np.where(chosen, rates[choice], 0.0),
            "expected_profit": np.where(chosen, best_profit, 0.0),
            "action_reason": np.where(chosen, reason[rows, choice], None),
        })

    def action(self, name: str) -> Action:
        for action in self.actions:
            if action.name == name:
                return action
        raise KeyError(name)

    def action_label(self, name: str) -> str:
        """What a person reads for the action `name`: its catalogue label ("No action" for
        NO_ACTION, the name in words for an action the catalogue no longer has)."""
        if name == NO_ACTION:
            return "No action"
        try:
            return self.action(name).label
        except KeyError:
            return str(name).replace("_", " ")

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        return {
            "value": self.value.model_dump(),
            "horizon_days": self.horizon_days,
            "retention_rate": self.retention_rate,
            "risk_threshold": self.risk_threshold,
            "value_threshold": self.value_threshold,
            "actions": [a.model_dump(mode="json") for a in self.actions],
        }

    @classmethod
    def from_dict(cls, d: dict) -> PortfolioPolicy:
        return cls(
            value=ValueSettings.model_validate(d.get("value", {})),
            horizon_days=int(d.get("horizon_days", 90)),
            retention_rate=float(d.get("retention_rate", 0.9)),
            risk_threshold=float(d.get("risk_threshold", 0.1)),
            value_threshold=float(d.get("value_threshold", 0.0)),
            actions=tuple(Action.model_validate(a) for a in d.get("actions", [])),
        )


def fit_policy(
    horizon_spend_predicted: np.ndarray,
    retention_rate: float,
    horizon_days: int,
    risk_threshold: float,
    value: ValueSettings | None = None,
    matrix: MatrixSettings | None = None,
    actions: tuple[Action, ...] = (),
) -> PortfolioPolicy:
    """The value threshold from a reference portfolio (the newest scored snapshot at training);
    `risk_threshold` is the `high` risk band's lower edge (`bundle.high_risk_from`)."""
    value = value or ValueSettings()
    matrix = matrix or MatrixSettings()
    policy = PortfolioPolicy(value=value, horizon_days=horizon_days,
                             retention_rate=float(retention_rate), actions=actions)
    ltv = policy.lifetime_value(policy.horizon_margin(horizon_spend_predicted))
    value_threshold = (matrix.value_threshold if matrix.value_threshold is not None
                       else float(np.quantile(ltv, matrix.value_quantile)))
    return replace(policy, risk_threshold=float(risk_threshold), value_threshold=value_threshold)


def _no_action(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "recommended_action": np.full(n, NO_ACTION, dtype=object),
        "action_channel": np.full(n, None, dtype=object),
        "action_cost": np.zeros(n),
        "action_success_rate": np.zeros(n),
        "expected_profit": np.zeros(n),
        "action_reason": np.full(n, None, dtype=object),
    })
