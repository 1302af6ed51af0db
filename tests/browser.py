"""Headless Chromium for tests: a screenshot and the rendered DOM of a page.

Without request headers, Chromium's own command line does the work (`--screenshot`, `--dump-dom`).
Chromium has no command-line flag for request headers, so with `headers` the page is driven
through the DevTools protocol instead: Chromium starts with `--remote-debugging-port=0`, prints
`DevTools listening on ws://...` on stderr, and a minimal WebSocket client (standard library
only, below) sends `Network.setExtraHTTPHeaders`, `Page.navigate`, waits for
`Page.loadEventFired`, then `Page.captureScreenshot` or `Runtime.evaluate`.

Every Chromium runs with a fresh profile folder, offline-friendly flags, and is ended (by its own
process group, which this module created) before the function returns.

    screenshot("file:///tmp/page.html", "/tmp/page.png")
    html = dump_dom("http://127.0.0.1:3000/customers/42", headers={"Authorization": "Bearer k"})
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

#: Flags that work headless, as root, offline (no network calls of Chromium's own).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
INSTALL_HINT = "install it with: apt-get update && apt-get install -y chromium"
DEFAULT_TIMEOUT = 60.0


def chromium_path() -> str:
    """The Chromium executable: $CHROMIUM, else `chromium` (Debian) or a usual alternative."""
    candidates = [os.environ.get("CHROMIUM", ""), "chromium", "/usr/bin/chromium",
                  "chromium-browser", "google-chrome", "google-chrome-stable"]
    for candidate in candidates:
        found = candidate and shutil.which(candidate)
        if found:
            return found
    raise FileNotFoundError(f"Chromium not found; {INSTALL_HINT}")


def screenshot(url: str, path: str | os.PathLike, width: int = 1280, height: int = 2000,
               headers: dict[str, str] | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Save a PNG of `url` as seen in a `width` x `height` viewport; returns the path."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if headers:
        with _devtools(url, headers, width, height, timeout) as (tab, _):
            data = tab.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
    else:
        _run_cli([f"--screenshot={path}", f"--window-size={width},{height}", url], timeout)
    if not path.is_file() or path.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot of {url} to {path}")
    return path


def assert_painted(shot: Path, size: tuple[int, int] = (1280, 2000)) -> None:
    """A real page was painted: the screenshot's size, not blank, and the waterfall's red
    (raising risk) and blue (lowering risk) bars are on it."""
    import numpy as np
    from PIL import Image, ImageStat

    with Image.open(shot) as image:
        assert image.size == size
        rgb = image.convert("RGB")
        spread = ImageStat.Stat(rgb).stddev
        colours = rgb.getcolors(maxcolors=1 << 20)
    assert min(spread) > 10, f"blank-looking screenshot (stddev {spread})"
    assert len(colours) > 200
    pixels = np.asarray(rgb, dtype=int)
    for name, (r, g, b) in (("red", (220, 38, 38)), ("blue", (37, 99, 235))):
        near = (np.abs(pixels - (r, g, b)).sum(axis=2) < 30).sum()
        assert near > 500, f"no {name} bars on the screenshot ({near} pixels)"


def dump_dom(url: str, headers: dict[str, str] | None = None,
             timeout: float = DEFAULT_TIMEOUT) -> str:
    """The page's DOM after loading (document.documentElement.outerHTML)."""
    if headers:
        with _devtools(url, headers, 1280, 2000, timeout) as (tab, _):
            result = tab.call("Runtime.evaluate", {
                "expression": "document.documentElement.outerHTML", "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating the DOM of {url} failed: {result['exceptionDetails']}")
        return result["result"]["value"]
    return _run_cli(["--dump-dom", url], timeout)


class Tab:
    """A page in a running Chromium (`page_session`): read it, act on it, photograph it."""

    def __init__(self, session: _Session):
        self._session = session

    def evaluate(self, expression: str, wait_for_load: bool = False):
        """The value of a JavaScript expression; `wait_for_load`: it navigates (a form sent),
        and this returns once the next page has loaded."""
        if wait_for_load:
            self._session.ws.events.clear()
        result = self._session.call("Runtime.evaluate", {"expression": expression,
                                                         "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluating {expression!r} failed: {result['exceptionDetails']}")
        if wait_for_load:
            self._session.wait_for("Page.loadEventFired")
        return result.get("result", {}).get("value")

    def screenshot(self, path: str | os.PathLike) -> Path:
        path = Path(path).resolve()
        data = self._session.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextlib.contextmanager
def page_session(url: str, width: int = 1280, height: int = 2000,
                 timeout: float = DEFAULT_TIMEOUT) -> Iterator[Tab]:
    """`url` loaded in a real Chromium (its redirects followed, its cookies kept) as a `Tab`."""
    with _devtools(url, {}, width, height, timeout) as (tab, _):
        yield Tab(tab)


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _run_cli(args: list[str], timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [chromium_path(), *FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            raise RuntimeError(f"Chromium timed out after {timeout:.0f} s: {args}") from None
        finally:
            _stop(proc)
    if proc.returncode != 0:
        tail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"Chromium exited with {proc.returncode} for {args}:\n{tail}")
    return out.decode("utf-8", errors="replace")


def _stop(proc: subprocess.Popen) -> None:
    """End the Chromium we started and its helper processes (its own process group)."""
    # Renderer and zygote helpers share the process group start_new_session=True created.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------
# DevTools protocol
# --------------------------------------------------------------------------------------------

_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


@contextlib.contextmanager
def _devtools(url: str, headers: dict[str, str], width: int, height: int,
              timeout: float) -> Iterator[tuple[_Session, _WebSocket]]:
    """A page session with `headers` sent on every request, navigated to `url` and loaded."""
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        stderr_path = Path(profile) / "stderr.log"
        profile_dir = Path(profile) / "profile"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [chromium_path(), *FLAGS, f"--user-data-dir={profile_dir}",
                 "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                 f"--window-size={width},{height}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,
            )
        ws = None
        try:
            ws_url = _wait_for_listening(proc, stderr_path, deadline)
            ws = _WebSocket(ws_url, deadline)
            browser = _Session(ws, None, deadline)
            target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session_id = browser.call(
                "Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            tab = _Session(ws, session_id, deadline)
            tab.call("Page.enable")
            tab.call("Network.enable")
            tab.call("Network.setExtraHTTPHeaders", {"headers": dict(headers)})
            tab.call("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            ws.events.clear()
            navigation = tab.call("Page.navigate", {"url": url})
            if navigation.get("errorText"):
                raise RuntimeError(f"Chromium could not open {url}: {navigation['errorText']}")
            tab.wait_for("Page.loadEventFired")
            yield tab, ws
            with contextlib.suppress(Exception):
                browser.call("Browser.close")
        finally:
            if ws is not None:
                ws.close()
            _stop(proc)


def _wait_for_listening(proc: subprocess.Popen, stderr_path: Path, deadline: float) -> str:
    while time.monotonic() < deadline:
        match = _LISTENING.search(stderr_path.read_bytes())
        if match:
            return match.group(1).decode()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    tail = stderr_path.read_bytes().decode(errors="replace")[-2000:]
    raise RuntimeError(f"Chromium did not open its DevTools port (exit {proc.poll()}):\n{tail}")


class _Session:
    """Commands and events of one DevTools session (the browser, or a page with session_id)."""

    def __init__(self, ws: _WebSocket, session_id: str | None, deadline: float):
        self.ws, self.session_id, self.deadline = ws, session_id, deadline

    def call(self, method: str, params: dict | None = None) -> dict:
        self.ws.next_id += 1
        message_id = self.ws.next_id
        message: dict = {"id": message_id, "method": method, "params": params or {}}
        if self.session_id:
            message["sessionId"] = self.session_id
        self.ws.send_text(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.ws.events.append(reply)

    def wait_for(self, event: str) -> dict:
        while True:
            for i, message in enumerate(self.ws.events):
                if message.get("method") == event and message.get("sessionId") == self.session_id:
                    return self.ws.events.pop(i)
            message = self._receive()
            if "method" in message:
                self.ws.events.append(message)

    def _receive(self) -> dict:
        if time.monotonic() > self.deadline:
            raise TimeoutError("Chromium did not answer in time")
        return json.loads(self.ws.recv_text(self.deadline))


class _WebSocket:
    """The client side of RFC 6455, enough for DevTools on localhost: text frames, no extensions."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url: str, deadline: float):
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock = socket.create_connection((host, port), timeout=_remaining(deadline))
        self.buffer = bytearray()
        self.next_id = 0
        self.events: list[dict] = []
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        while b"\r\n\r\n" not in self.buffer:
            self._fill(deadline)
        head, rest = bytes(self.buffer).split(b"\r\n\r\n", 1)
        self.buffer = bytearray(rest)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in f"{lines[0]} ":
            raise ConnectionError(f"WebSocket upgrade refused: {lines[0]}")
        expected = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        if fields.get("sec-websocket-accept") != expected:
            raise ConnectionError("WebSocket upgrade: bad Sec-WebSocket-Accept")

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def recv_text(self, deadline: float) -> str:
        parts: list[bytes] = []
        while True:
            fin, opcode, payload = self._frame(deadline)
            if opcode == 0x8:
                raise ConnectionError("WebSocket closed by Chromium")
            if opcode == 0x9:
                self._send(0xA, payload)
            elif opcode in (0x0, 0x1, 0x2):
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send(0x8, struct.pack("!H", 1000))
        with contextlib.suppress(OSError):
            self.sock.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        mask = os.urandom(4)
        repeated = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            n, "big")
        self.sock.sendall(header + mask + masked)

    def _frame(self, deadline: float) -> tuple[bool, int, bytes]:
        first, second = self._read(2, deadline)
        n = second & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2, deadline))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8, deadline))
        mask = self._read(4, deadline) if second & 0x80 else b""
        payload = self._read(n, deadline)
        if mask:
            repeated = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
                n, "big")
        return bool(first & 0x80), first & 0x0F, payload

    def _read(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            self._fill(deadline)
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def _fill(self, deadline: float) -> None:
        self.sock.settimeout(_remaining(deadline))
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("WebSocket connection closed")
        self.buffer += chunk


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("Chromium did not answer in time")
    return left
