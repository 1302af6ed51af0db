"""Starting the real BentoML server as a process: used by `churn serve`, the demo, the
integration tests and the benchmark, so they all run the same thing.

Each server gets a private instance folder (`settings.py`): BentoML's home (so the Prometheus
folder BentoML wipes at start is its own), `churn serve`'s decisions, the startup-failure report
and the workers' switch barrier. The server dies with its parent (`PR_SET_PDEATHSIG`), and its
workers with the server, so a killed `churn serve` leaves nothing holding the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from churn_risk.runtime import OFFLINE_ENV, THREADING_ENV
from churn_risk.serving import auth
from churn_risk.serving.people import write_session_secret
from churn_risk.serving.settings import (
    DATA_ENV,
    FAILURE_FILE,
    INSTANCE_ENV,
    MAPPING_ENV,
    POLL_ENV,
    PROJECT_ENV,
    STORE_ENV,
    InstanceOptions,
    write_instance,
)

SERVICE = "churn_risk.serving.service:ChurnService"
PR_SET_PDEATHSIG = 1


class ServerFailed(RuntimeError):
    """The server could not start; the message says why."""


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send this process `sig` when its parent dies (elsewhere: nothing)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, sig)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def server_env(data, project_dir: str | Path | None = None, insecure: bool = False,
               poll_seconds: float = 5.0, keys: str | None = None,
               public_metrics: bool = False, host: str = "127.0.0.1",
               max_body_bytes: int | None = None) -> dict[str, str]:
    """The server's environment, with a new private instance folder (`CHURN_INSTANCE_DIR`).
    `data` is a folder, a URL or a `DataSource` (with its mapping file)."""
    from churn_risk.features.io import as_source

    source = as_source(data)
    # The server is no part of a caller's MLflow run or experiment.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME",
                        "CHURN_INSECURE_DEV", INSTANCE_ENV, "BENTOML_HOME")}
    env.update(OFFLINE_ENV)
    for key, value in THREADING_ENV.items():
        env.setdefault(key, value)
    location = source.location
    env[DATA_ENV] = str(Path(location).resolve()) if "://" not in location else location
    env.pop(STORE_ENV, None)
    if source.store:
        env[STORE_ENV] = location
    env.pop(MAPPING_ENV, None)
    if source.mapping is not None:
        env[MAPPING_ENV] = str(Path(source.mapping.path).resolve())
    env[PROJECT_ENV] = str(Path(project_dir or Path.cwd()).resolve())
    env[POLL_ENV] = str(poll_seconds)
    if keys is not None:
        env[auth.KEYS_ENV] = keys
    if max_body_bytes is not None:
        env["CHURN_MAX_BODY_BYTES"] = str(max_body_bytes)
    instance = Path(tempfile.mkdtemp(prefix="churn-serve-"))  # private: mode 0700
    write_instance(instance, InstanceOptions(insecure_dev=insecure,
                                             public_metrics=public_metrics, host=host))
    write_session_secret(instance)  # the workers' shared secret for browser sessions
    env[INSTANCE_ENV] = str(instance)
    env["BENTOML_HOME"] = str(instance / "bentoml")
    return env


def server_command(host: str, port: int) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port)]


def start(env: dict[str, str], host: str = "127.0.0.1", port: int | None = None,
          quiet: bool = True, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start the server in its own process group, dying with this process; returns the
    process and its base URL. Its output goes to `log` when given, else nowhere (`quiet`) or
    to this process's."""
    port = port or free_port()
    out = (open(log, "ab") if log is not None  # noqa: SIM115 - the child holds it
           else subprocess.DEVNULL if quiet else None)
    process = subprocess.Popen(server_command(host, port), env=env, stdout=out,
                               stderr=subprocess.STDOUT if log is not None else out,
                               start_new_session=True, preexec_fn=die_with_parent)
    process.instance_dir = env.get(INSTANCE_ENV)  # type: ignore[attr-defined]
    return process, f"http://{'localhost' if host in ('0.0.0.0', '::') else host}:{port}"


def failure(process: subprocess.Popen) -> str | None:
    """Why the server reported it cannot start, if it did."""
    folder = getattr(process, "instance_dir", None)
    path = Path(folder) / FAILURE_FILE if folder else None
    return path.read_text() if path is not None and path.exists() else None


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll /readyz until the service has loaded its model and snapshot; `ServerFailed` with
    the reason when the server reports it cannot start or exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reason = failure(process)
        if reason is not None:
            raise ServerFailed(reason)
        if process.poll() is not None:
            raise ServerFailed(f"the server exited with code {process.returncode} before it "
                               "was ready")
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the server at {base_url} was not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the server's process group, SIGKILL what is left after `timeout` seconds, and
    remove its instance folder."""
    try:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # workers that outlived the arbiter too
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    finally:
        folder = getattr(process, "instance_dir", None)
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
