"""A small Chrome DevTools Protocol driver for headless Debian Chromium (websocket-client).

Starts `/usr/bin/chromium` with a fresh profile and `--remote-debugging-port=0`, reads the port
from `DevToolsActivePort`, attaches to the first page, and offers what the tests need:
navigate, evaluate JavaScript, click, wait for a condition, and capture a PNG.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import websocket

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1360,900",
)


class BrowserError(RuntimeError):
    """The browser did not start, or a page did not reach the expected state in time."""


class Browser:
    """One headless Chromium process and a CDP session on its first page."""

    def __init__(self, profile_dir: Path, *, timeout: float = 30.0) -> None:
        profile_dir.mkdir(parents=True, exist_ok=True)
        port_file = profile_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile_dir}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise BrowserError(f"chromium did not start (exit {self.proc.poll()})")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            targets = json.load(resp)
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=timeout, suppress_origin=True
        )
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a CDP method and return its result (events that arrive meanwhile are kept)."""
        call_id = next(self._ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == call_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float = 15.0, interval: float = 0.1) -> Any:
        """Poll `expression` until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.eval(expression)
            except BrowserError:
                last = None  # the page is navigating
            if last:
                return last
            time.sleep(interval)
        raise BrowserError(f"timed out waiting for {expression!r} (last value {last!r})")

    def goto(self, url: str, *, timeout: float = 15.0) -> None:
        self.eval("window.__rcsOld = true")
        self.send("Page.navigate", url=url)
        self.wait_for_load(timeout=timeout)

    def wait_for_load(self, *, timeout: float = 15.0) -> None:
        """Wait until a new document (one without the marker of the old one) has loaded."""
        self.wait_for("!window.__rcsOld && document.readyState === 'complete'", timeout=timeout)

    def click(self, selector: str, *, navigates: bool = True) -> None:
        """Click an element (confirm() dialogs answered yes); wait for the next page if it
        navigates."""
        found = self.eval(
            f"""(() => {{
                window.confirm = () => true;
                window.__rcsOld = true;
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return false;
                el.click();
                return true;
            }})()"""
        )
        if not found:
            raise BrowserError(f"no element matches {selector!r}")
        if navigates:
            self.wait_for_load()

    def fill(self, selector: str, value: str) -> None:
        ok = self.eval(
            f"""(() => {{
                const el = document.querySelector({json.dumps(selector)});
                if (!el) return false;
                el.value = {json.dumps(value)};
                return true;
            }})()"""
        )
        if not ok:
            raise BrowserError(f"no element matches {selector!r}")

    def text(self, selector: str) -> str | None:
        return self.eval(
            f"(document.querySelector({json.dumps(selector)}) || {{}}).textContent || null"
        )

    def count(self, selector: str) -> int:
        return int(self.eval(f"document.querySelectorAll({json.dumps(selector)}).length"))

    def screenshot(self, path: Path) -> None:
        """A PNG of the whole page (not only the viewport)."""
        height = int(self.eval("document.documentElement.scrollHeight"))
        width = int(self.eval("document.documentElement.scrollWidth"))
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=min(height, 6000),
            deviceScaleFactor=1,
            mobile=False,
        )
        try:
            data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        finally:
            self.send("Emulation.clearDeviceMetricsOverride")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data["data"]))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.send("Browser.close")
        try:
            self.ws.close()
        finally:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
