"""Helpers for the tests that run the real service: HTTP requests with the test key, the problem
shape every error has, and `churn serve` as a process with the server processes it starts."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

KEY = "hardening-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@contextlib.contextmanager
def running(data, project, keys: str, **env):
    """A real server on `data` with the champion of `project`'s store and these API keys (and
    extra environment), ready; its base URL. Stopped after."""
    from churn_risk.serving import launch

    environment = launch.server_env(data, project_dir=project, keys=keys)
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        environment.pop(name, None)
    environment.update({k: str(v) for k, v in env.items()})
    process, base = launch.start(environment)
    try:
        launch.wait_ready(base, process)
        yield base
    finally:
        launch.stop(process)


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}



def request(base: str, path: str, body=None, headers=AUTH, method=None, raw: bytes | None = None,
            content_type: str | None = "application/json"):
    """(status, headers, parsed JSON or text)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    hdrs = {**({"Content-Type": content_type} if content_type else {}), **(headers or {})}
    req = urllib.request.Request(f"{base}{path}", data=data, headers=hdrs,
                                 method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, head, text = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, head, text = error.code, dict(error.headers), error.read()
    try:
        return status, head, json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return status, head, text.decode(errors="replace")


def assert_problem(answer, status: int, slug: str) -> dict:
    code, headers, body = answer
    assert code == status, (code, body)
    assert headers["content-type"].startswith("application/problem+json"), headers
    assert body["status"] == status and body["type"] == f"urn:churn-risk:problem:{slug}", body
    assert set(body) == {"type", "title", "status", "detail", "instance", "errors"}
    return body


def churn_serve(project, port: int, *extra: str, keys: str = KEY) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["CHURN_API_KEYS"] = keys
    return subprocess.Popen([sys.executable, "-m", "churn_risk.cli", "serve", "--data",
                             str(project["data"]), "--port", str(port), *extra],
                            cwd=project["folder"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


_seen: dict[int, set[int]] = {}


def servers_of(port: int) -> list[int]:
    """Pids still alive of the processes serving on `port`: the bentoml arbiter and its
    workers (its children; remembered once seen, so workers that outlive it count too)."""
    table = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True,
                           text=True).stdout.splitlines()
    rows = [line.split(None, 2) for line in table if line.strip()]
    seen = _seen.setdefault(port, set())
    arbiters = {int(pid) for pid, _, args in rows
                if "bentoml serve" in args and f"--port {port}" in args}
    seen |= arbiters | {int(pid) for pid, ppid, _ in rows if int(ppid) in arbiters}
    alive = {int(pid) for pid, _, _ in rows}
    return sorted(seen & alive)


def wait_until(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()
