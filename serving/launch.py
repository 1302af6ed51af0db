"""Starting the real BentoML server as a process: used by `churn serve`, the demo, the
integration tests and the benchmark, so they all run the same thing."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from churn_risk.runtime import OFFLINE_ENV, THREADING_ENV
from churn_risk.serving import auth

SERVICE = "churn_risk.serving.service:ChurnService"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(data, project_dir: str | Path | None = None, insecure: bool = False,
               poll_seconds: float = 5.0, keys: str | None = None) -> dict[str, str]:
    """The server's environment: `data` is a folder, a URL or a `DataSource` (with its
    mapping file)."""
    from churn_risk.features.io import as_source

    source = as_source(data)
    # The server is no part of a caller's MLflow run or experiment.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")}
    env.update(OFFLINE_ENV)
    for key, value in THREADING_ENV.items():
        env.setdefault(key, value)
    location = source.location
    env["CHURN_DATA"] = str(Path(location).resolve()) if "://" not in location else location
    env.pop("CHURN_MAPPING", None)
    if source.mapping is not None:
        env["CHURN_MAPPING"] = str(Path(source.mapping.path).resolve())
    env["CHURN_PROJECT_DIR"] = str(Path(project_dir or Path.cwd()).resolve())
    env["CHURN_POLL_SECONDS"] = str(poll_seconds)
    if insecure:
        env[auth.INSECURE_ENV] = "1"
    if keys is not None:
        env[auth.KEYS_ENV] = keys
    return env


def server_command(host: str, port: int) -> list[str]:
    bentoml = Path(sys.executable).with_name("bentoml")
    return [str(bentoml), "serve", SERVICE, "--host", host, "--port", str(port)]


def start(env: dict[str, str], host: str = "127.0.0.1", port: int | None = None,
          quiet: bool = True) -> tuple[subprocess.Popen, str]:
    """Start the server in its own process group; returns the process and its base URL."""
    port = port or free_port()
    out = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(server_command(host, port), env=env, stdout=out, stderr=out,
                               start_new_session=True)
    return process, f"http://{host}:{port}"


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll /readyz until the service has loaded its model and snapshot."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the server at {base_url} was not ready after {timeout:.0f} s")


def stop(process: subprocess.Popen, timeout: float = 20.0) -> None:
    import signal

    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
