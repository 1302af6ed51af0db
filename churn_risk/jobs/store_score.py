"""`churn store score`: the whole portfolio scored as of now into the store, for the service to
read by customer id (`serving.stored`). A server started on a scored portfolio is ready in
seconds; run it ahead of a start, or from a scheduler, with the model the service follows."""

from __future__ import annotations

from collections.abc import Callable

from churn_risk.errors import UsageError
from churn_risk.jobs.common import CHAMPION_URI, registered_bundle


def run(store_url: str, model: str = CHAMPION_URI,
        progress: Callable[[int, int], None] | None = None) -> dict:
    """The run as `Store.latest_run` returns it (customers, as of, ...)."""
    from churn_risk.features.live import live_now
    from churn_risk.features.store import Store
    from churn_risk.serving.outcomes import with_reported_outcomes
    from churn_risk.serving.scorer import ModelRef
    from churn_risk.serving.stored import materialise
    from churn_risk.training.tracking import configure_tracking

    configure_tracking()
    bundle, name, version = registered_bundle(model)
    if not name:
        raise UsageError(f"--model {model}: the service reads a registered model's scores "
                         "(models:/<name>@<alias> or models:/<name>/<version>)")
    alias = model.split("@", 1)[1] if "@" in model else None
    with Store(store_url) as store:
        with_reported_outcomes(bundle, store)
        return materialise(store, bundle, ModelRef(name, version, alias), live_now(), progress)
