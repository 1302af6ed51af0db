"""Model-from-code entry point for MLflow: the logged model is this file plus the bundle
artifacts, never a pickled Python object."""

import mlflow

from churn_risk.models.pyfunc import ChurnRiskModel

mlflow.models.set_model(ChurnRiskModel())
