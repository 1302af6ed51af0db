"""`churn serve` as an operator runs it: every signal stops every server process, a busy port or
a missing key is a one-line error, and no champion stops it with the reason instead of a
restart loop."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from churn_risk.serving import launch
from tests.serve import churn_serve, servers_of, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(champion_project, demo_folder):
    return {"folder": champion_project, "data": demo_folder}



@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_stopping_churn_serve_stops_every_server_process(project, sig):
    port = launch.free_port()
    parent = churn_serve(project, port)
    try:
        launch.wait_ready(f"http://127.0.0.1:{port}", parent)
        assert len(servers_of(port)) >= 3  # churn serve, the arbiter, two workers
        started = time.monotonic()
        parent.send_signal(sig)
        assert wait_until(lambda: not launch.port_in_use("127.0.0.1", port), 10), \
            f"port {port} still held {time.monotonic() - started:.1f} s after {sig!r}"
        assert wait_until(lambda: not servers_of(port), 10), servers_of(port)
        if sig != signal.SIGKILL:
            assert parent.wait(timeout=10) == 0
    finally:
        parent.kill()
        parent.wait()


def test_a_busy_port_is_a_one_line_error_and_exit_2(project):
    with socket.socket() as taken:  # another program listening on the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        parent = churn_serve(project, port)
        output, _ = parent.communicate(timeout=60)
    assert parent.returncode == 2
    assert f"port {port} on 127.0.0.1 is in use" in output and "Traceback" not in output


@pytest.mark.parametrize("keys, message", [("x", "has 1 characters: keys need at least 16"),
                                           ("", "no API key configured")])
def test_short_or_missing_keys_refuse_to_start(project, keys, message):
    parent = churn_serve(project, launch.free_port(), keys=keys)
    output, _ = parent.communicate(timeout=60)
    assert parent.returncode == 2 and message in output and "Traceback" not in output


def test_insecure_dev_only_on_loopback(project):
    parent = churn_serve(project, launch.free_port(), "--insecure-dev", "--host", "0.0.0.0",
                         keys="")
    output, _ = parent.communicate(timeout=60)
    assert parent.returncode == 2 and "only on a loopback address" in output


def test_no_champion_at_all_stops_churn_serve_with_the_reason(demo_folder, tmp_path):
    project = {"data": demo_folder, "folder": tmp_path}
    port = launch.free_port()
    started = time.monotonic()
    parent = churn_serve(project, port)
    output, _ = parent.communicate(timeout=90)
    assert parent.returncode == 1 and time.monotonic() - started < 60
    assert "no model 'models:/churn-risk@champion'" in output and "churn promote" in output
    assert not servers_of(port)
