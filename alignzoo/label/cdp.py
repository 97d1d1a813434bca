"""A small headless-Chromium driver over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

Used by the labeling page's browser test; needs only the ``chromium`` binary (no chromedriver, no extra Python
package). Chromium reads NUL-terminated JSON commands on fd 3 and writes replies and events on fd 4.

    with Chromium() as browser:
        page = browser.open("http://127.0.0.1:8765/")
        page.wait_for("document.body.dataset.ready === '1'")
        page.press("1")
        page.click(".completion[data-index='1']")
        page.evaluate("document.title")
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any, Optional

from alignzoo.board.browser import find_chromium

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--remote-debugging-pipe", "--window-size=1200,900"]
#: DevTools key codes of the keys the page uses
KEY_CODES = {"Backspace": 8, "Enter": 13, "Escape": 27, **{str(d): 48 + d for d in range(10)},
             **{c: ord(c.upper()) for c in "abcdefghijklmnopqrstuvwxyz"}}


class CDPError(RuntimeError):
    pass


class Chromium:
    def __init__(self, binary: Optional[str] = None, timeout: float = 30.0):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise FileNotFoundError("chromium not found; install it with `apt-get install -y chromium`")
        self.timeout = timeout
        self._id = 0
        self._buf = b""
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "Chromium":
        self.profile = tempfile.mkdtemp(prefix="alignzoo-cdp-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # fds >= 10, so that placing them on 3 and 4 in the child cannot clobber one another
        a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)

        def child_fds() -> None:
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                     preexec_fn=child_fds, close_fds=False, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_chrome_r, from_chrome_w, a, b):
            os.close(fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.send("Browser.close")
                except (CDPError, OSError, TimeoutError):
                    pass
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        finally:
            for fd in (self._to_chrome, self._from_chrome):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method: str, params: Optional[dict[str, Any]] = None, session: Optional[str] = None) -> Any:
        """Send one command and return its result (events that arrive meanwhile are dropped)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" not in self._buf:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, left))
                if not ready:
                    raise TimeoutError(f"chromium did not answer {method} within {self.timeout:.0f}s")
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise CDPError(f"chromium exited while waiting for {method}")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def open(self, url: str) -> "Page":
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.goto(url)
        return page


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser, self.session = browser, session

    def send(self, method: str, params: Optional[dict[str, Any]] = None) -> Any:
        return self.browser.send(method, params, self.session)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        out = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in out:
            raise CDPError(f"{expression!r} threw: {out['exceptionDetails'].get('exception', {}).get('description')}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except CDPError:
                value = None  # the page is navigating
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {expression}")
            time.sleep(0.05)

    def press(self, key: str) -> None:
        """A real key press (keyDown with its text, then keyUp), as a person's keyboard sends it."""
        code = KEY_CODES[key]
        text = key if len(key) == 1 else ""
        down = {"type": "keyDown" if text else "rawKeyDown", "key": key, "windowsVirtualKeyCode": code}
        if text:
            down["text"] = text
        self.send("Input.dispatchKeyEvent", down)
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "windowsVirtualKeyCode": code})

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the first element matching ``selector``."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                            " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        if not box:
            raise CDPError(f"no element matches {selector!r}")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})
