"""`churn promote`: the newest (or a given) version becomes @champion if it predicts what the
champion predicts and is at least as good on the same held-out rows."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from churn_risk.features.io import DataSourceLike
from churn_risk.features.lifecycle import PreparedData
from churn_risk.jobs.common import prepared
from churn_risk.training.registry import Decision


class PromoteSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str | None = None
    force: bool = False
    actor: str | None = None


@dataclass(frozen=True)
class PromoteResult:
    decision: Decision
    #: The rows the versions were judged on (None when nothing was evaluated).
    judged_on: str | None

    @property
    def refused(self) -> bool:
        """A refusal (not the no-op of promoting the champion itself)."""
        return not self.decision.promoted and self.decision.previous != self.decision.version


def run(source: DataSourceLike, settings: PromoteSettings | None = None,
        prep: PreparedData | None = None) -> PromoteResult:
    settings = settings or PromoteSettings()
    from churn_risk.training.evaluate import HoldoutEvaluator
    from churn_risk.training.registry import promote
    from churn_risk.training.tracking import configure_tracking

    configure_tracking()
    judge = HoldoutEvaluator(prepared(source, prep))
    decision = promote(judge, force=settings.force, version=settings.version,
                       actor=settings.actor, target_of=judge.target_of, begin=judge.begin)
    return PromoteResult(decision, judge.description if judge.target is not None else None)
