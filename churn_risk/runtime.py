"""Process-level set-up done when a job or the service starts (never at import)."""

from __future__ import annotations

import os

#: Settings that keep the product offline: no usage telemetry from BentoML or MLflow.
OFFLINE_ENV = {
    "BENTOML_DO_NOT_TRACK": "True",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


def configure_offline() -> None:
    """Turn off telemetry for this process and its children, unless the user set otherwise."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
