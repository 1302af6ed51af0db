"""Where MLflow writes: set up once when a job starts, never at import.

The default is embedded: a SQLite file (`mlflow.db`) and an artifact folder (`mlartifacts/`) in
the project folder, so a fresh checkout needs no server. A team points every job at its shared
server by exporting ``MLFLOW_TRACKING_URI``; the model registry always follows the tracking URI.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

from churn_risk.errors import UsageError, first_line
from churn_risk.runtime import configure_offline

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
EXPERIMENT = "churn-risk"
MODEL_NAME = "churn-risk"

ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"

#: Loggers that announce SQLite store creation and schema migrations at INFO on every fresh store.
QUIET_LOGGERS = ("alembic", "mlflow.store.db.utils", "mlflow.pyfunc", "mlflow.models")

# `mlflow.set_tracking_uri` exports the URI as MLFLOW_TRACKING_URI so that child processes inherit
# it. That export must not be mistaken for a user's choice the next time this process configures
# tracking (a second project folder, the next test): remember the default URI we exported.
_exported_default: str | None = None


@dataclass(frozen=True)
class TrackingSetup:
    """What a job is writing to, and how a person looks at it."""

    tracking_uri: str
    experiment_id: str
    artifact_root: str
    ui_command: str


def default_tracking_uri(project_dir: Path | None = None) -> str:
    """The embedded store: ``sqlite:////<absolute project dir>/mlflow.db``."""
    folder = Path(project_dir) if project_dir is not None else Path.cwd()
    return f"sqlite:///{(folder.resolve() / DEFAULT_DB).as_posix()}"


def tracking_uri(project_dir: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when the user set it (a team's server), else the embedded store."""
    from_env = os.environ.get(ENV_TRACKING_URI, "").strip()
    if from_env and from_env != _exported_default:
        return from_env
    return default_tracking_uri(project_dir)


def artifact_root(project_dir: Path | None = None) -> str:
    """The embedded artifact folder as a ``file://`` URI."""
    folder = Path(project_dir) if project_dir is not None else Path.cwd()
    return (folder / DEFAULT_ARTIFACTS).resolve().as_uri()


def configure_tracking(
    project_dir: Path | None = None, experiment: str = EXPERIMENT
) -> TrackingSetup:
    """Point MLflow (tracking and registry) at the store and make `experiment` the active one.

    Creates the SQLite file and the experiment when missing; safe to call again.
    """
    global _exported_default

    configure_offline()
    # Artifact transfers are local and instant here: no per-file progress bars in our output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)

    folder = Path(project_dir) if project_dir is not None else Path.cwd()
    uri = tracking_uri(folder)
    embedded = uri == default_tracking_uri(folder)
    if embedded:
        folder.mkdir(parents=True, exist_ok=True)
        _exported_default = uri

    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)

    try:
        with store_lock(uri):  # the first command on a new store creates it, alone
            launched = os.environ.get("MLFLOW_RUN_ID")
            if launched:  # started by `mlflow run`: log into the run (and experiment) it made
                experiment_id = MlflowClient().get_run(launched).info.experiment_id
            else:
                experiment_id = _ensure_experiment(experiment,
                                                   artifact_root(folder) if embedded else None)
            active = mlflow.set_experiment(experiment_id=experiment_id)
    except (MlflowException, OSError) as exc:
        raise UsageError(f"the MLflow tracking store {uri!r} cannot be used: "
                         f"{first_line(exc)}{_HINT}") from None
    except ImportError as exc:
        raise UsageError(f"the MLflow tracking store {uri!r} needs a database driver that is "
                         f"not installed ({exc.name}){_HINT}") from None
    except Exception as exc:  # the store's driver (SQLAlchemy, requests) failed to connect
        if type(exc).__module__.split(".")[0] not in ("sqlalchemy", "requests", "urllib3"):
            raise
        raise UsageError(f"the MLflow tracking store {uri!r} cannot be used: "
                         f"{first_line(exc)}{_HINT}") from None
    return TrackingSetup(
        tracking_uri=uri,
        experiment_id=active.experiment_id,
        artifact_root=active.artifact_location,
        ui_command=ui_command(uri, active.artifact_location if embedded else None, experiment_id),
    )


_HINT = (f"; start it, fix {ENV_TRACKING_URI}, or unset it to use the embedded store "
         f"(./{DEFAULT_DB})")


@contextlib.contextmanager
def store_lock(uri: str):
    """An exclusive lock around opening a SQLite store: MLflow creates and migrates a new store
    on first use, and two processes doing it at once fail (`alembic` CommandError). Other
    stores: no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """A tracking server that does not answer is reported at once (MLflow itself retries with
    back-off for minutes); other stores are checked when first used."""
    if not uri.startswith(("http://", "https://")):
        return
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"the MLflow tracking server {uri!r} is unreachable ({reason})"
                         f"{_HINT}") from None


def job_tags() -> dict[str, str]:
    """Who runs this job (set on every run), so a later job can tell a run whose process was
    killed from one still going."""
    import socket

    return {"job.host": socket.gethostname(), "job.pid": str(os.getpid())}


def close_dead_runs(experiment_id: str) -> list[str]:
    """Mark FAILED the runs of this host left RUNNING by a process that no longer exists (a
    `churn train` killed with -9), and their logged models that never became READY. Returns
    the run ids closed."""
    import socket

    from mlflow.entities import LoggedModelStatus, RunStatus

    client = MlflowClient()
    host = socket.gethostname()
    closed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'",
                                  max_results=200):
        tags = run.data.tags
        if tags.get("job.host") != host or not tags.get("job.pid", "").isdigit():
            continue
        if _alive(int(tags["job.pid"])):
            continue
        client.set_tag(run.info.run_id, "job.outcome", "killed (closed by a later job)")
        client.set_terminated(run.info.run_id, status=RunStatus.to_string(RunStatus.FAILED))
        closed.append(run.info.run_id)
    if closed:
        for model in client.search_logged_models([experiment_id], max_results=1000):
            if model.source_run_id in closed and model.status == LoggedModelStatus.PENDING:
                client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    return closed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ui_command(uri: str, artifacts: str | None, experiment_id: str | None = None) -> str:
    """The exact command (or address) a person uses to look at the runs and the registry."""
    if uri.startswith(("http://", "https://")):
        page = f"{uri.rstrip('/')}/#/experiments/{experiment_id}" if experiment_id else uri
        return f"open {page}"
    command = f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    if artifacts:
        command += f" --default-artifact-root {shlex.quote(artifacts)}"
    return command


def _ensure_experiment(name: str, artifact_location: str | None) -> str:
    client = MlflowClient()
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as error:  # another job created it between our two calls
        if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
        return client.get_experiment_by_name(name).experiment_id
