"""Process-level set-up done when a job or the service starts (never at import)."""

from __future__ import annotations

import os

#: Settings that keep the product offline: no usage telemetry from BentoML or MLflow.
OFFLINE_ENV = {
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}

#: OpenMP threads (XGBoost's) that wait for work sleep instead of spinning. With the default
#: active wait, two XGBoost threads on two cores that another process also uses spin against
#: it: measured here, 0.25 s per boosting round instead of 0.0035 s (70x slower) while a test
#: suite ran on the other core. Read by the OpenMP runtime when it loads, so it is set before
#: XGBoost is imported, and children (Dask workers, the server) inherit it.
THREADING_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure_offline() -> None:
    """Turn off telemetry and set the threading policy for this process and its children,
    unless the user set otherwise."""
    for key, value in {**OFFLINE_ENV, **THREADING_ENV}.items():
        os.environ.setdefault(key, value)
