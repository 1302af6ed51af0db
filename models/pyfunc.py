"""The MLflow pyfunc face of the bundle: the only way a trained model is stored and loaded."""

from __future__ import annotations

from importlib import metadata

import mlflow
import pandas as pd

from churn_risk.models.bundle import ChurnBundle

ARTIFACT_KEY = "bundle"


class ChurnRiskModel(mlflow.pyfunc.PythonModel):
    """`predict` returns scores; the bundle (`.bundle`) also explains them."""

    bundle: ChurnBundle

    def load_context(self, context) -> None:
        self.bundle = ChurnBundle.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.bundle.predict(model_input)


def load_bundle(model_uri: str) -> ChurnBundle:
    """Load the bundle behind a model URI, e.g. `models:/churn-risk@champion`."""
    model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().bundle


def pip_requirements() -> list[str]:
    """What the logged model needs at load time: the runtime libraries, pinned as installed."""
    names = ["xgboost-cpu", "xgboost", "pandas", "numpy", "scikit-learn", "pyarrow", "mlflow"]
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def resolve_model(model_uri: str) -> tuple[str, str]:
    """(registered name, version) behind `models:/<name>@<alias>` or `models:/<name>/<version>`;
    for any other URI ("", the URI itself). Raises LookupError naming the URI when the alias or
    version does not exist."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not model_uri.startswith("models:/"):
        return "", model_uri
    ref = model_uri[len("models:/"):]
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
        name, version = ref.rsplit("/", 1)
        MlflowClient().get_model_version(name, version)
        return name, version
    except (MlflowException, ValueError):
        raise LookupError(
            f"no model {model_uri!r} in the registry: run `churn train` and `churn promote` "
            "first, or pass --model models:/churn-risk/<version>"
        ) from None
