"""What several jobs share: reading the data once, and the registered model they use."""

from __future__ import annotations

from churn_risk.errors import UsageError
from churn_risk.features.io import DataSourceLike
from churn_risk.features.lifecycle import PreparedData

CHAMPION_URI = "models:/churn-risk@champion"


def prepared(source: DataSourceLike, prep: PreparedData | None = None) -> PreparedData:
    """`prep` when the caller already read the data, else read and validate them now."""
    if prep is not None:
        return prep
    from churn_risk.features.lifecycle import prepare
    from churn_risk.features.validation import load_crm

    return prepare(load_crm(source))


def registered_bundle(model_uri: str):
    """(bundle, registered name, version) of a model URI (`models:/<name>@<alias>`,
    `models:/<name>/<version>` or any MLflow model URI); `UsageError` naming it when it does not
    exist or cannot be loaded. Tracking must be configured."""
    from mlflow.exceptions import MlflowException

    from churn_risk.models.pyfunc import load_bundle, resolve_model

    try:
        name, version = resolve_model(model_uri)
    except LookupError as exc:
        raise UsageError(f"--model: {exc}") from None
    try:
        return load_bundle(f"models:/{name}/{version}" if name else model_uri), name, version
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"--model {model_uri}: cannot load the model ({first}); train and "
                         "promote a model first (churn train, then churn promote)") from None


def learn_from_outcomes(bundle, source: DataSourceLike) -> None:
    """From a store, `bundle`'s success rates also learn from the outcome reports it holds
    (`serving.outcomes.with_reported_outcomes`); files hold none."""
    from churn_risk.features.io import as_source

    source = as_source(source)
    if source.store:
        from churn_risk.features.store import Store
        from churn_risk.serving.outcomes import with_reported_outcomes

        with Store(source.location) as store:
            with_reported_outcomes(bundle, store)
