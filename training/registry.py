"""Registering model versions and promoting a challenger to ``@champion``.

Promotion is its own step: the caller supplies `evaluate(model_uri) -> metrics`, which scores a
registered version on the newest test snapshot, and the challenger and the current champion are
judged by that same function, so on the same data. Every decision is recorded in the registry,
whatever it was:

- on the challenger version, tags ``promotion.decision`` (promoted / refused / forced),
  ``promotion.reason``, ``promotion.at``, ``promotion.by``, ``promotion.previous_champion`` and
  ``promotion.metrics``;
- on the registered model, tag ``champion_history``: a compact JSON list of
  ``{version, at, forced, previous}``, one entry per change of champion, newest last.

Serving and batch scoring load ``models:/<name>@champion``; stages are never used.
"""

from __future__ import annotations

import getpass
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from numbers import Real

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

from churn_risk.errors import UsageError
from churn_risk.training.tracking import MODEL_NAME

CHAMPION = "champion"
HISTORY_TAG = "champion_history"
logger = logging.getLogger(__name__)
HISTORY_LENGTH = 50
#: Registered-model tag values are VARCHAR(5000) in MLflow's SQL schema (SQLite ignores the width,
#: PostgreSQL and MySQL do not), so the history is trimmed to fit as well as to 50 entries.
HISTORY_MAX_CHARS = 5000
REQUIRED_METRICS = ("roc_auc", "ece")


@dataclass(frozen=True)
class Candidate:
    """A registered version and its metrics on the newest test snapshot."""

    version: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class Decision:
    promoted: bool
    version: str
    previous: str | None
    reason: str
    forced: bool


def version_uri(version: str, name: str = MODEL_NAME) -> str:
    return f"models:/{name}/{version}"


def register(
    model_uri: str, run_id: str, name: str = MODEL_NAME, tags: dict[str, str] | None = None
) -> str:
    """Register the logged model at `model_uri` as a new version of `name`; return its number."""
    version_tags = {"run_id": run_id, **(tags or {})}
    version = mlflow.register_model(model_uri, name, tags=version_tags)
    return str(version.version)


def champion_version(name: str = MODEL_NAME) -> str | None:
    """The version the ``champion`` alias points at; None before the first promotion."""
    model = _registered_model(name)
    if model is None:
        return None
    version = model.aliases.get(CHAMPION)
    return None if version is None else str(version)


def newest_version(name: str = MODEL_NAME) -> str | None:
    """The highest version number registered under `name`; None when there is none."""
    versions = MlflowClient().search_model_versions(
        filter_string=f"name = {_quote(name)}", max_results=1, order_by=["version_number DESC"]
    )
    return str(versions[0].version) if versions else None


def decide(
    challenger: Candidate,
    champion: Candidate | None,
    auc_tolerance: float = 0.0,
    ece_tolerance: float = 0.005,
) -> Decision:
    """Promote the first version; afterwards only a challenger at least as good as the champion.

    At least as good: ROC AUC no lower than the champion's minus `auc_tolerance`, and expected
    calibration error (ECE) no higher than the champion's plus `ece_tolerance` plus twice the
    ECE's sampling noise on the test snapshot (`ece_noise`, when the metrics carry it): on a
    small snapshot a base-rate model has a near-zero ECE by luck and must not block every
    better model.
    """
    promoted, comparison = _compare(challenger, champion, auc_tolerance, ece_tolerance)
    verdict = "promoted" if promoted else "refused"
    previous = None if champion is None else champion.version
    return Decision(promoted, challenger.version, previous, f"{comparison}: {verdict}", False)


def promote(
    evaluate: Callable[[str], Mapping[str, float]],
    name: str = MODEL_NAME,
    force: bool = False,
    version: str | None = None,
    auc_tolerance: float = 0.0,
    ece_tolerance: float = 0.005,
    actor: str | None = None,
    target_of: Callable[[str], object] | None = None,
    begin: Callable[[list[str]], None] | None = None,
) -> Decision:
    """Judge `version` (default: the newest) against the champion and move the alias if it wins.

    `evaluate("models:/<name>/<version>")` must return at least ``roc_auc`` and ``ece``;
    `begin([challenger_uri, champion_uri])`, when given, is called first so that the evaluator
    can fix rows fair to both. `target_of(uri)`, when given, states what a model predicts: a
    challenger with another target than the champion's is refused without evaluation (their
    probabilities are of different things). With `force`, the alias moves whatever the
    comparison says, and the decision is recorded as forced.
    """
    version = str(version) if version is not None else newest_version(name)
    if version is None:
        raise UsageError(f"no version of model {name!r} is registered: train one first "
                         "(churn train)")
    client = MlflowClient()
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise UsageError(f"--version {version}: model {name!r} has no such version "
                         f"(newest: {newest_version(name)})") from None
    actor = actor or _current_user()
    for line in repair(name):
        logger.warning("%s", line)
    previous = champion_version(name)
    if previous == version:
        return Decision(False, version, previous, f"version {version} is already champion", False)

    uris = [version_uri(version, name)] + ([version_uri(previous, name)] if previous else [])
    mismatch = None
    if target_of is not None and previous is not None:
        new_target, old_target = target_of(uris[0]), target_of(uris[1])
        if new_target != old_target and not getattr(new_target, "same_definition",
                                                    lambda _: False)(old_target):
            mismatch = (f"version {version} predicts {new_target}, champion v{previous} predicts "
                        f"{old_target}: models with different targets are never compared")
    if mismatch is not None:
        challenger, champion = Candidate(version, {}), None
        decision = Decision(False, version, previous, f"{mismatch}: refused", False)
        if force:
            decision = replace(decision, promoted=True, forced=True,
                               reason=f"forced by {actor}: {mismatch} (the target changes)")
    else:
        if begin is not None:
            begin(uris)
        challenger = Candidate(version, _evaluate(evaluate, name, version))
        champion = None
        if previous is not None:
            champion = Candidate(previous, _evaluate(evaluate, name, previous))
        decision = decide(challenger, champion, auc_tolerance, ece_tolerance)
        if force:
            _, comparison = _compare(challenger, champion, auc_tolerance, ece_tolerance)
            verdict = "would have been promoted" if decision.promoted else "would have been refused"
            reason = f"forced by {actor}: {comparison} ({verdict})"
            decision = replace(decision, promoted=True, forced=True, reason=reason)

    at = datetime.now(UTC).isoformat(timespec="seconds")
    outcome = "forced" if decision.forced else "promoted" if decision.promoted else "refused"
    evidence = {"challenger": challenger.metrics}
    if champion is not None:
        evidence["champion"] = champion.metrics
    # Crash-safe order: the intent first (decision "pending"), then the alias (the one atomic
    # switch between old and new state), then the history, then the decision. A kill at any
    # point leaves either the old champion or the new one, and `repair` (run by every promote)
    # completes or closes a partial promotion.
    record = {
        "promotion.reason": decision.reason,
        "promotion.at": at,
        "promotion.by": actor,
        "promotion.previous_champion": previous or "none",
        "promotion.metrics": json.dumps(evidence, sort_keys=True),
    }
    if not decision.promoted:
        _tag_version(client, name, version, {**record, "promotion.decision": outcome})
        return decision
    client.set_model_version_tag(name, version, "promotion.decision", PENDING)  # first
    _tag_version(client, name, version, {**record, "promotion.intended": outcome})
    client.set_registered_model_alias(name, CHAMPION, version)
    _complete(client, name, version)
    return decision


#: The decision tag of a promotion that started and has not finished.
PENDING = "pending"


def _tag_version(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    """Set tags, `promotion.decision` last (it is what says the record is complete)."""
    for key, value in sorted(tags.items(), key=lambda kv: kv[0] == "promotion.decision"):
        client.set_model_version_tag(name, version, key, value)


def _complete(client: MlflowClient, name: str, version: str) -> None:
    """Finish a promotion whose alias has moved: the history entry (once), then the decision."""
    tags = client.get_model_version(name, version).tags
    history = champion_history(name)
    last = history[-1] if history else {}
    if (str(last.get("version")), last.get("at")) != (str(version), tags.get("promotion.at")):
        previous = tags.get("promotion.previous_champion", "none")
        entry = {"version": str(version), "at": tags.get("promotion.at"),
                 "forced": tags.get("promotion.intended") == "forced",
                 "previous": None if previous == "none" else previous}
        client.set_registered_model_tag(name, HISTORY_TAG, _encode_history([*history, entry]))
    client.set_model_version_tag(name, version, "promotion.decision",
                                 tags.get("promotion.intended", "promoted"))


def repair(name: str = MODEL_NAME) -> list[str]:
    """Complete or close promotions interrupted by a kill; returns what was done, one line each.
    A pending version that is champion gets its history entry and decision; one that is not
    (killed before the alias moved) is marked `interrupted`: the champion never changed."""
    client = MlflowClient()
    if _registered_model(name) is None:
        return []
    champion = champion_version(name)
    done = []
    for mv in client.search_model_versions(filter_string=f"name = {_quote(name)}"):
        if mv.tags.get("promotion.decision") != PENDING:
            continue
        version = str(mv.version)
        if version == champion:
            _complete(client, name, version)
            done.append(f"completed the interrupted promotion of version {version} (it is "
                        "champion)")
        else:
            client.set_model_version_tag(name, version, "promotion.reason",
                                         "interrupted before the alias moved: "
                                         + mv.tags.get("promotion.reason", ""))
            client.set_model_version_tag(name, version, "promotion.decision", "interrupted")
            done.append(f"version {version}'s promotion was interrupted before the alias moved: "
                        f"marked interrupted; champion unchanged (v{champion})")
    return done


def champion_history(name: str = MODEL_NAME) -> list[dict]:
    """Every change of champion, oldest first: ``{version, at, forced, previous}``."""
    model = _registered_model(name)
    if model is None or HISTORY_TAG not in model.tags:
        return []
    try:
        history = json.loads(model.tags[HISTORY_TAG])
    except json.JSONDecodeError as error:
        raise ValueError(
            f"registered model {name!r} tag {HISTORY_TAG!r} is not valid JSON ({error}); "
            "fix or delete the tag in the MLflow UI"
        ) from error
    if not isinstance(history, list):
        raise ValueError(f"registered model {name!r} tag {HISTORY_TAG!r} is not a JSON list")
    return history


def _encode_history(history: list[dict]) -> str:
    history = history[-HISTORY_LENGTH:]
    text = json.dumps(history, separators=(",", ":"))
    while len(text) > HISTORY_MAX_CHARS and len(history) > 1:
        history = history[1:]
        text = json.dumps(history, separators=(",", ":"))
    return text


def _compare(
    challenger: Candidate, champion: Candidate | None, auc_tolerance: float, ece_tolerance: float
) -> tuple[bool, str]:
    """Whether the challenger may replace the champion, and the comparison in words."""
    _check_metrics(challenger)
    new = challenger.metrics
    if champion is None:
        return True, (
            f"version {challenger.version} AUC {new['roc_auc']:.4f}, ECE {new['ece']:.4f}; "
            "no champion yet"
        )
    _check_metrics(champion)
    old = champion.metrics
    ece_tolerance += 2 * max(new.get("ece_noise", 0.0), old.get("ece_noise", 0.0))
    auc_ok = new["roc_auc"] >= old["roc_auc"] - auc_tolerance
    ece_ok = new["ece"] <= old["ece"] + ece_tolerance
    auc_rule = (">=" if auc_ok else "<") + (
        f", tolerance {auc_tolerance:.4f}" if auc_tolerance else ""
    )
    return auc_ok and ece_ok, (
        f"version {challenger.version} AUC {new['roc_auc']:.4f} vs champion "
        f"v{champion.version} {old['roc_auc']:.4f} ({auc_rule}), "
        f"ECE {new['ece']:.4f} vs {old['ece']:.4f} "
        f"({'<=' if ece_ok else '>'}, tolerance {ece_tolerance:.4f})"
    )


def _evaluate(
    evaluate: Callable[[str], Mapping[str, float]], name: str, version: str
) -> dict[str, float]:
    uri = version_uri(version, name)
    metrics = {key: float(value) for key, value in evaluate(uri).items() if isinstance(value, Real)}
    missing = [key for key in REQUIRED_METRICS if key not in metrics]
    if missing:
        raise ValueError(f"evaluate({uri!r}) returned no {', '.join(missing)}: {sorted(metrics)}")
    return metrics


def _check_metrics(candidate: Candidate) -> None:
    missing = [key for key in REQUIRED_METRICS if key not in candidate.metrics]
    if missing:
        raise ValueError(f"version {candidate.version} has no {', '.join(missing)} metric")


def _registered_model(name: str):
    try:
        return MlflowClient().get_registered_model(name)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise


def _quote(value: str) -> str:
    """A string literal for an MLflow search filter."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"model name {value!r} contains both quote characters")


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return "unknown"
