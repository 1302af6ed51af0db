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
