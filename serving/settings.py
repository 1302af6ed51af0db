"""The service's settings: one typed model, read from the environment in one place.

The environment names the data and the keys (what a deployment sets):

| variable | meaning |
|---|---|
| `CHURN_DATA`, `CHURN_MAPPING` | the CRM data (folder or URL) and its mapping file |
| `CHURN_STORE` | the store (URL) the data are read from and `POST /events` writes to |
| `CHURN_RESCORE_SECONDS` | live: the whole portfolio is re-scored this often (86400, daily) |
| `CHURN_FOLLOW_SECONDS` | live: how often the store is asked for new records (0.2) |
| `CHURN_GAUGE_SECONDS` | live: how often the portfolio and drift gauges are recomputed (60) |
| `CHURN_PROJECT_DIR` | where the embedded MLflow store is (`MLFLOW_TRACKING_URI` wins) |
| `CHURN_POLL_SECONDS` | how often the champion alias is checked (default 5) |
| `CHURN_API_KEYS`, `CHURN_API_KEYS_FILE` | the API keys (`auth.py`) |
| `CHURN_USERS_FILE` | named users and integrations with their roles (`people.py`) |
| `CHURN_AUDIT_FILE` | the audit log of who opened which customer (`audit.jsonl` in the project) |
| `CHURN_SESSION_SECRET` | signs browser sessions (default: a new secret per server) |
| `CHURN_MAX_BODY_BYTES` | the largest request body accepted (default 4 MiB) |
| `CHURN_REQUEST_TIMEOUT_SECONDS` | a request is answered or stopped (504) within this (2.5) |
| `CHURN_INSTANCE_DIR` | this server's private folder, made by `churn serve` (below) |

What only `churn serve`'s own flags may decide (`--insecure-dev`, `--public-metrics`) is written
by it into `instance.json` in the instance folder, a private (0700) folder it creates for each
server: no environment variable turns authentication off. The instance folder also holds
BentoML's home (so the Prometheus folder BentoML wipes at start is this server's own), the
metrics of the workers, the startup-failure report `churn serve` waits for, and the barrier that
lets every worker switch to a new champion together.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from churn_risk.serving.people import AUDIT_ENV, AUDIT_FILE, USERS_ENV

DATA_ENV = "CHURN_DATA"
MAPPING_ENV = "CHURN_MAPPING"
STORE_ENV = "CHURN_STORE"
RESCORE_ENV = "CHURN_RESCORE_SECONDS"
FOLLOW_ENV = "CHURN_FOLLOW_SECONDS"
GAUGE_ENV = "CHURN_GAUGE_SECONDS"
PROJECT_ENV = "CHURN_PROJECT_DIR"
POLL_ENV = "CHURN_POLL_SECONDS"
MAX_BODY_ENV = "CHURN_MAX_BODY_BYTES"
TIMEOUT_ENV = "CHURN_REQUEST_TIMEOUT_SECONDS"
INSTANCE_ENV = "CHURN_INSTANCE_DIR"
INSTANCE_FILE = "instance.json"
FAILURE_FILE = "startup-failure.txt"
DEFAULT_MAX_BODY = 4 * 1024 * 1024
#: Workers of one server (two cores): also the size of the switch barrier.
WORKERS = 2


class InstanceOptions(BaseModel):
    """What `churn serve` decided for this server (`instance.json`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    insecure_dev: bool = False
    public_metrics: bool = False
    host: str = "127.0.0.1"


class ServiceSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    data: str = "demo-data"
    mapping: str | None = None
    #: The store (`churn serve --store`): the data's source and where events are written.
    store: str | None = None
    #: Live (a store): the whole portfolio is re-scored as of now this often.
    rescore_seconds: float = Field(86_400.0, ge=60)
    #: Live: how often the store is asked for new records.
    follow_seconds: float = Field(0.2, gt=0, le=60)
    #: Live: how often the portfolio and drift gauges are recomputed (a GROUP BY over the
    #: served scores, and the newest `churn monitor` verdict).
    gauge_seconds: float = Field(60.0, ge=1)
    project_dir: str | None = None
    poll_seconds: float = Field(5.0, gt=0)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY, ge=1024)
    #: Requests are answered (or stopped with a 504) within this many seconds.
    request_timeout: float = Field(2.5, gt=0, le=2.8)  # below BentoML's own 3 s
    instance_dir: str | None = None
    #: Named users and integrations (`people.py`); None: only the API keys.
    users_file: str | None = None
    #: Where who opened which customer is appended (`people.AuditLog`).
    audit_file: str = "audit.jsonl"
    options: InstanceOptions = InstanceOptions()
    workers: int = WORKERS

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        """The one place the service reads its environment."""
        env = os.environ if environ is None else environ
        instance = env.get(INSTANCE_ENV) or None
        options = InstanceOptions()
        if instance is not None and (Path(instance) / INSTANCE_FILE).exists():
            options = InstanceOptions.model_validate_json(
                (Path(instance) / INSTANCE_FILE).read_text())
        return cls(
            data=env.get(STORE_ENV) or env.get(DATA_ENV, "demo-data"),
            store=env.get(STORE_ENV) or None,
            rescore_seconds=float(env.get(RESCORE_ENV, "86400")),
            follow_seconds=float(env.get(FOLLOW_ENV, "0.2")),
            gauge_seconds=float(env.get(GAUGE_ENV, "60")),
            mapping=env.get(MAPPING_ENV) or None,
            project_dir=env.get(PROJECT_ENV) or None,
            poll_seconds=float(env.get(POLL_ENV, "5")),
            max_body_bytes=int(env.get(MAX_BODY_ENV, str(DEFAULT_MAX_BODY))),
            request_timeout=float(env.get(TIMEOUT_ENV, "2.5")),
            instance_dir=instance,
            users_file=env.get(USERS_ENV) or None,
            audit_file=env.get(AUDIT_ENV) or str(
                Path(env.get(PROJECT_ENV) or ".") / AUDIT_FILE),
            options=options,
        )

    def instance_path(self, name: str) -> Path | None:
        return None if self.instance_dir is None else Path(self.instance_dir) / name


def write_instance(folder: Path, options: InstanceOptions) -> None:
    """`churn serve`'s decisions for the server it starts (read back by `from_environment`)."""
    from churn_risk.features.io import atomic_write

    atomic_write(folder / INSTANCE_FILE, json.dumps(options.model_dump()))


def report_startup_failure(settings: ServiceSettings, reason: str) -> None:
    """Tell `churn serve` (which waits for readiness) why the service cannot start."""
    from churn_risk.features.io import atomic_write

    path = settings.instance_path(FAILURE_FILE)
    if path is not None:
        atomic_write(path, reason)
