"""The MLflow pyfunc face of the bundle: the only way a trained model is stored and loaded.

The logged model is self-contained: the bundle's files (no pickles), the model-from-code entry
point (`mlflow_model.py`), this project's own code (`code_paths`: the `churn_risk` package) and
pinned requirements of exactly what loading it imports. A data scientist's notebook or
`mlflow models serve` in an environment made from nothing but those requirements loads
`models:/churn-risk@champion` and predicts.

`predict(frame, params={"top_k": k})`: per row the calibrated churn probability (its target is
in the model's metadata and `bundle.target`), risk band, value, quadrant and propensities; with
`top_k` > 0 also the k reasons raising risk most (`reason_<i>_feature`, `_group`,
`_contribution`); a `customer_id` column in the input comes back first.
"""

from __future__ import annotations

import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd

from churn_risk.models.bundle import ChurnBundle

ARTIFACT_KEY = "bundle"
#: What loading the model imports (mlflow-skinny is the part of MLflow that loads models).
RUNTIME = ("mlflow-skinny", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "pydantic",
           "pandera", "xgboost-cpu", "xgboost")
PARAMS = {"top_k": 0}


class ChurnRiskModel(mlflow.pyfunc.PythonModel):
    """`predict` returns scores (and reasons on request); the bundle (`.bundle`) explains."""

    bundle: ChurnBundle

    def load_context(self, context) -> None:
        self.bundle = ChurnBundle.load(context.artifacts[ARTIFACT_KEY])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None
                ) -> pd.DataFrame:
        return predict(self.bundle, model_input, int((params or {}).get("top_k", 0)))


def predict(bundle: ChurnBundle, frame: pd.DataFrame, top_k: int = 0) -> pd.DataFrame:
    """The pyfunc's answer (see the module doc)."""
    frame = frame.reset_index(drop=True)
    dm = bundle.dmatrix(frame)
    out = bundle.predict(frame, dm)
    if top_k > 0:
        out = pd.concat([out, bundle.reason_columns(bundle.explain(frame, dm), top_k)], axis=1)
    if "customer_id" in frame:
        out.insert(0, "customer_id", frame["customer_id"].to_numpy())
    return out


def load_bundle(model_uri: str) -> ChurnBundle:
    """Load the bundle behind a model URI, e.g. `models:/churn-risk@champion`."""
    model = mlflow.pyfunc.load_model(model_uri)
    return model.unwrap_python_model().bundle


def pip_requirements() -> list[str]:
    """What the logged model needs at load time, pinned as installed here."""
    pins = []
    for name in RUNTIME:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def input_example(bundle: ChurnBundle, rows: pd.DataFrame) -> pd.DataFrame:
    """A few rows as the model takes them: numbers as float64 (a count is a float feature, so
    the example reads back as its schema says), categories as text."""
    example = rows[bundle.feature_names].head(5).copy()
    for spec in bundle.specs:
        if spec.kind == "categorical":
            example[spec.name] = example[spec.name].astype(object)
        else:
            example[spec.name] = pd.to_numeric(example[spec.name]).astype("float64")
    return example


def log_bundle(bundle: ChurnBundle, example_rows: pd.DataFrame):
    """Log the bundle as the run's self-contained `model` (see the module doc)."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    import churn_risk
    from churn_risk.models import mlflow_model

    example = input_example(bundle, example_rows)
    inferred = infer_signature(example, predict(bundle, example, 3), params=PARAMS)
    # MLflow drops input columns its schema does not name: declare the optional id that
    # `predict` passes through (numbers or text, as the CRM has them) so callers can match
    # answers to customers.
    customer_id = ColSpec(AnyType(), "customer_id", required=False)
    inputs = Schema([customer_id, *inferred.inputs.inputs])
    outputs = Schema([customer_id, *inferred.outputs.inputs])
    signature = ModelSignature(inputs=inputs, outputs=outputs, params=inferred.params)
    with tempfile.TemporaryDirectory() as tmp:
        folder = bundle.save(Path(tmp) / "bundle")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(mlflow_model.__file__)),
            artifacts={ARTIFACT_KEY: str(folder)},
            code_paths=[str(Path(churn_risk.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            metadata={"target": bundle.target.as_dict(), "feature_set":
                      bundle.info.get("feature_set")},
        )


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
            f"no model {model_uri!r} in the registry (no such name, version or alias): run "
            "`churn train` and `churn promote` first, or pass --model models:/churn-risk/<version>"
        ) from None
