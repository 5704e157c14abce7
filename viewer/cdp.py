#!/usr/bin/env python3
"""A minimal driver of headless Chromium over the DevTools protocol (--remote-debugging-pipe:
JSON messages separated by NUL bytes on file descriptors 3 and 4), standard library only. Used by
the browser tests of the viewer (tests/python/test_view_browser.py) and to take the screenshot in
the docs:

    python3 viewer/cdp.py PAGE.html OUT.png [--width 1400 --height 900] [--frame K]

Networking is cut off: every host resolves to nothing and every request goes to a dead proxy,
and each request the page makes is recorded (`requests`), so a test can assert that a page
loaded nothing but itself. WebGL runs on SwiftShader (software), so no GPU is needed.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> Optional[str]:
    env = os.environ.get("ATTNFLOW_CHROMIUM")
    if env:
        return env
    # Debian's /usr/bin/chromium is a shell launcher; the browser itself is this binary.
    if os.access("/usr/lib/chromium/chromium", os.X_OK):
        return "/usr/lib/chromium/chromium"
    for name in CHROMIUM_CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page. Events are kept in `events` (method, params)."""

    def __init__(self, width: int = 1400, height: int = 900, offline: bool = True,
                 chromium: Optional[str] = None, timeout: float = 60.0):
        exe = chromium or find_chromium()
        if not exe:
            raise BrowserError("chromium not found (Debian package chromium; scripts/install-deps.sh)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="attnflow-chromium-")
        args = [exe, "--headless", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--disable-dev-shm-usage",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
                "--hide-scrollbars", "--mute-audio", f"--window-size={width},{height}",
                "--allow-file-access-from-files"]
        # No sandbox: it refuses to run as root and needs user namespaces that containers often
        # lack; this driver only opens local pages (the viewer's) with networking cut off.
        args.append("--no-sandbox")
        if offline:
            args += ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
                     "--proxy-bypass-list=<-loopback>"]
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds():  # Chromium reads commands on fd 3 and writes replies on fd 4
            import fcntl

            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)  # above 4: dup2 cannot clobber them
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3, inheritable=True)
            os.dup2(w, 4, inheritable=True)

        self.proc = subprocess.Popen(args + ["about:blank"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=child_fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: Dict[int, dict] = {}
        self._cond = threading.Condition()
        self.events: List[tuple] = []
        self.requests: List[str] = []
        self._closed = False
        self._stderr: List[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)
        if offline:
            self.call("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                      "downloadThroughput": -1, "uploadThroughput": -1}, session=True)

    # -- transport
    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append((msg.get("method"), msg.get("params", {})))
                        if msg.get("method") == "Network.requestWillBeSent":
                            self.requests.append(msg["params"]["request"]["url"])
                    self._cond.notify_all()

    def call(self, method: str, params: Optional[dict] = None, session: bool = False) -> dict:
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg: Dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while mid not in self._replies:
                if self._closed:
                    raise BrowserError(f"chromium exited during {method}: "
                                       + b"".join(self._stderr[-20:]).decode(errors="replace"))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrowserError(f"no reply to {method} within {self.timeout} s")
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: Optional[float] = None, start: int = 0) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._cond:
            while True:
                for name, params in self.events[start:]:
                    if name == method:
                        return params
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BrowserError(f"no {method} event within {timeout or self.timeout} s")
                self._cond.wait(left)

    # -- page
    def open(self, path: str) -> None:
        url = path if "://" in path else "file://" + os.path.abspath(path)
        start = len(self.events)
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_event("Page.loadEventFired", start=start)

    def eval(self, expression: str, await_promise: bool = True) -> Any:
        r = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": await_promise,
                                           "returnByValue": True}, session=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression[:80]}: {r['exceptionDetails'].get('text')} "
                               f"{r['exceptionDetails'].get('exception', {}).get('description', '')}")
        return r.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: Optional[float] = None) -> Any:
        """Polls a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            v = self.eval(expression)
            if v:
                return v
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression}")
            time.sleep(0.1)

    def screenshot(self, clip: Optional[dict] = None) -> bytes:
        params: Dict[str, Any] = {"format": "png"}
        if clip:
            params["clip"] = dict(clip, scale=1)
        return base64.b64decode(self.call("Page.captureScreenshot", params, session=True)["data"])

    def errors(self, start: int = 0) -> List[str]:
        """Console errors, uncaught exceptions and error log entries (events from `start` on)."""
        out = []
        for name, p in self.events[start:]:
            if name == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + d.get("text", "") + " " + d.get("exception", {}).get("description", ""))
            elif name == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description", "")))
                                                                  for a in p.get("args", [])))
            elif name == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        return out

    def close(self) -> None:
        try:
            if not self._closed:
                self.call("Browser.close")
        except BrowserError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        self._reader.join(timeout=10)  # ends at end of file: Chromium has exited
        os.close(self._from_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Screenshot of an attnflow viewer page (headless Chromium)")
    p.add_argument("page")
    p.add_argument("out")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=900)
    p.add_argument("--frame", type=int, default=-1, help="viewer frame to show (default: the last)")
    a = p.parse_args(argv)
    with Browser(a.width, a.height) as b:
        b.open(a.page)
        b.wait_for("window.attnflowViewer && window.attnflowViewer.ready")
        drawn = b.eval("window.attnflowViewer.drawn")
        frame = a.frame if a.frame >= 0 else b.eval("window.attnflowViewer.frames()") - 1
        b.eval(f"window.attnflowViewer.setFrame({frame})")
        b.wait_for(f"window.attnflowViewer.drawn > {drawn}")
        time.sleep(0.5)
        png = b.screenshot()
        if b.errors():
            print("\n".join(b.errors()), file=sys.stderr)
            return 1
    with open(a.out, "wb") as fh:
        fh.write(png)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
