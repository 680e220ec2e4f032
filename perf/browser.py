"""Headless Chromium driven over the Chrome DevTools Protocol (its websocket, `websocket-client`), for the report's
browser tests, its timing and its README screenshot: the system's Debian ``chromium`` (never a browser downloaded
at test time), started as root can start it, with a fresh profile, and nothing it may reach on its own
(no background networking, no component updates, no sync, no QUIC).

    with Chromium.start(tmp_dir) as browser:
        page = browser.page()
        page.open(Path("report.html").resolve().as_uri())
        page.wait_for("document.body.dataset.ready")
        page.evaluate("document.querySelectorAll('article.item').length")
        page.screenshot(Path("shot.png"))
        page.console_errors(), page.requests()

`find_chromium()` names the executable or says why there is none; `Chromium.start` raises `BrowserUnavailable`
with the reason when it cannot start (tests skip with it)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-port=0")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


class BrowserUnavailable(RuntimeError):
    """No Chromium here, or it would not start: the reason, for a test's skip message."""


def find_chromium() -> str:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserUnavailable(f"no Chromium on PATH (looked for {', '.join(CANDIDATES)}; Debian: apt-get install "
                             "chromium)")


class Chromium:
    """One headless Chromium process and its browser-level DevTools connection."""

    def __init__(self, proc: subprocess.Popen, ws, profile: Path):
        self.proc, self.ws, self.profile = proc, ws, profile
        self.next_id = 0
        self.events: list[dict] = []

    @classmethod
    def start(cls, work: Path, timeout: float = 30.0) -> "Chromium":
        try:
            import websocket
        except ImportError:
            raise BrowserUnavailable("the websocket-client package is not installed (pip install -e '.[test]')") \
                from None
        exe = find_chromium()
        Path(work).mkdir(parents=True, exist_ok=True)
        profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=work))  # fresh: no stale port file
        log = open(Path(work) / "chromium.log", "wb")
        proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        log.close()
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + timeout
        while not port_file.is_file() or len(port_file.read_text().split()) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                tail = (Path(work) / "chromium.log").read_text(errors="replace").strip().splitlines()[-1:]
                raise BrowserUnavailable(f"{exe} did not start ({tail[0] if tail else 'no output'})")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        try:
            ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=timeout, suppress_origin=True)
        except OSError as e:
            proc.kill()
            proc.wait()
            raise BrowserUnavailable(f"{exe}: no DevTools connection ({e})") from None
        return cls(proc, ws, profile)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60.0) -> dict:
        """One DevTools command; events arriving meanwhile are kept in ``events``."""
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(method)

    def page(self, width: int = 1400, height: int = 1000) -> "Page":
        """A new tab whose viewport is exactly width x height CSS pixels (screenshots of that size)."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Network", "Log", "Performance"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                          "mobile": False})
        return page

    def cpu_seconds(self) -> float:
        """CPU time used so far by all of this browser's processes (browser, renderers, GPU, utilities): a figure a
        busy machine does not inflate, unlike wall time."""
        return sum(p.get("cpuTime", 0.0) for p in self.send("SystemInfo.getProcessInfo").get("processInfo", []))

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab: navigate, evaluate JavaScript, read its console and requests, take screenshots."""

    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    def call(self, method: str, params: dict | None = None) -> dict:
        return self.browser.send(method, params, self.session)

    def mine(self, method: str) -> list[dict]:
        return [e.get("params", {}) for e in self.browser.events
                if e.get("sessionId") == self.session and e.get("method") == method]

    def open(self, url: str, timeout: float = 60.0) -> None:
        """Navigate and wait for the load event."""
        before = len(self.mine("Page.loadEventFired"))
        self.call("Page.navigate", {"url": url})
        self.wait(lambda: len(self.mine("Page.loadEventFired")) > before, timeout, "the load event")

    def wait(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}")
            self.call("Runtime.evaluate", {"expression": "0"})  # lets pending events arrive
            time.sleep(0.02)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited); a thrown exception raises here."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails'].get('text')} "
                               f"{r['exceptionDetails'].get('exception', {}).get('description', '')}")
        return r.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 60.0) -> Any:
        """Poll until the expression is truthy; its value."""
        box: list = []
        self.wait(lambda: box.append(self.evaluate(expression)) or box[-1], timeout, expression)
        return box[-1]

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (CSP violations, failed loads)."""
        out = [" ".join(str(a.get("value", a.get("description", ""))) for a in e.get("args", []))
               for e in self.mine("Runtime.consoleAPICalled") if e.get("type") in ("error", "assert")]
        out += [e.get("exceptionDetails", {}).get("text", "exception") for e in self.mine("Runtime.exceptionThrown")]
        out += [e["entry"].get("text", "") for e in self.mine("Log.entryAdded") if e["entry"].get("level") == "error"]
        return out

    def requests(self) -> list[str]:
        """Every URL the page asked for (the document itself included)."""
        return [e["request"]["url"] for e in self.mine("Network.requestWillBeSent")]

    def metrics(self) -> dict[str, float]:
        """Chromium's page metrics (``TaskDuration``, ``ScriptDuration``: seconds of main-thread work so far,
        ``JSHeapUsedSize``, ...)."""
        return {m["name"]: m["value"] for m in self.call("Performance.getMetrics").get("metrics", [])}

    def dialogs(self) -> list[str]:
        return [e.get("message", "") for e in self.mine("Page.javascriptDialogOpening")]

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)


def environment_note() -> str:
    """Where the browser came from, for perf records."""
    try:
        exe = find_chromium()
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                                 env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")}).stdout.strip()
        return f"{exe}: {version}"
    except (BrowserUnavailable, OSError, subprocess.SubprocessError) as e:
        return str(e)
