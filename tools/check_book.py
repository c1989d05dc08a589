"""Open every page of the built book in headless Chromium with no network; check charts and math.

Why: a chart that loads Vega from a CDN, or a MathJax that does, looks fine on a laptop with
Wi-Fi and is blank for a reader offline. Only a real browser tells. For each page this checks:

- every chart output drew: its container is a vega-embed with an ``svg``/``canvas`` of non-zero
  size (``book/_static/stampede-charts.js`` marks each one ``drawn`` or ``error``);
- no chart is shown as text instead (Altair's "renderer has not been properly enabled" stub, or
  "Error loading script" from a CDN-loading renderer): the notebook forgot ``enable_offline()``;
- every ``$math$`` was typeset by the vendored MathJax, without errors;
- the page asked for nothing over the network: Chromium runs with a dead proxy
  (``127.0.0.1:9``) and any ``http(s)`` request is reported, failed or not;
- no script threw.

It drives Chromium over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL on fds 3 and 4), so it needs only the standard library, waits for the
page instead of guessing a time budget, and saves a full-page screenshot per page under
``book/_build/screenshots/``.

Usage: ``python tools/check_book.py [book/_build/html] [--screenshots DIR]``; exits 1 and lists
the failing pages and charts. ``check_book()`` is the same, callable from a test.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HTML = ROOT / "book" / "_build" / "html"
SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--hide-scrollbars",
    # Any request that is not file:// goes to a closed port and fails: the book must not need it.
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--remote-debugging-pipe",
]

# Runs in the page once it has loaded: waits for charts and MathJax, then reports what it sees.
PAGE_PROBE = """
(async () => {
  const deadline = Date.now() + %(wait_ms)d;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const pending = () =>
    [...document.querySelectorAll(".stampede-chart")].some(
      (el) => (el.dataset.stampedeState || "pending") === "pending");
  while (pending() && Date.now() < deadline) await sleep(100);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await Promise.race([MathJax.startup.promise, sleep(Math.max(deadline - Date.now(), 0))]);
  }
  const charts = [...document.querySelectorAll(".stampede-chart")].map((el) => {
    const drawing = el.querySelector("svg.marks, canvas.marks");
    const box = drawing ? drawing.getBoundingClientRect() : { width: 0, height: 0 };
    const heading = el.closest("section") && el.closest("section").querySelector("h1, h2, h3");
    return {
      state: el.dataset.stampedeState || "pending",
      error: el.dataset.stampedeError || "",
      embed: el.classList.contains("vega-embed"),
      width: box.width,
      height: box.height,
      section: heading ? heading.textContent.replace("#", "").trim() : "",
    };
  });
  const outputs = [...document.querySelectorAll("script")].filter(
    (s) => s.textContent.includes("window.stampedeChart||")).length;
  const math = [...document.querySelectorAll(".math")];
  const text = document.body ? document.body.innerText : "";
  return {
    charts,
    outputs,
    math: math.length,
    mathTypeset: math.filter((m) => m.querySelector("mjx-container")).length,
    mathErrors: document.querySelectorAll("mjx-merror, [data-mjx-error]").length,
    errorLoading: text.includes("Error loading script"),
    altairStub: text.includes("renderer has not been properly enabled"),
    missingLoader: text.includes("This chart needs book/_static/stampede-charts.js"),
  };
})()
"""


class BookCheckError(AssertionError):
    """Raised when a page of the book fails a check; the message lists every failure."""


@dataclass
class PageReport:
    """What one page showed: how many charts drew, and what went wrong."""

    page: str
    charts: int = 0
    math: int = 0
    screenshot: Path | None = None
    problems: list[str] = field(default_factory=list)


class DevTools:
    """A minimal DevTools-protocol client over Chromium's ``--remote-debugging-pipe``."""

    def __init__(self, chromium: str, profile: Path, log: Any) -> None:
        to_chrome_r, self._write = os.pipe()
        self._read, from_chrome_w = os.pipe()

        def wire_fds() -> None:  # in the child: Chromium reads fd 3 and writes fd 4
            reader, writer = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(reader, 3)
            os.dup2(writer, 4)

        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(3, 4),
            preexec_fn=wire_fds,  # this tool runs no threads; Chromium wants fds 3 and 4
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(
        self, method: str, session: str | None = None, timeout: float = 60, **params: Any
    ) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BookCheckError(f"Chromium refused {method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            self.events.append(reply)

    def wait_for(self, event: str, timeout: float) -> bool:
        """Wait until ``event`` arrives (or already did); False on timeout."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            try:
                self.events.append(self._receive(deadline, event))
            except TimeoutError:
                return False
        return True

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer {waiting_for} in time")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise BookCheckError(f"Chromium exited while waiting for {waiting_for}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        decoded: dict[str, Any] = json.loads(raw)
        return decoded

    def close(self) -> None:
        """Ask Chromium to quit; kill only this process if it does not."""
        with contextlib.suppress(BookCheckError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._write)
        os.close(self._read)


def find_chromium() -> str:
    """Chromium from ``$CHROMIUM`` or PATH; a clear error if there is none."""
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (path := shutil.which(candidate)):
            return path
    raise BookCheckError("no Chromium found: apt-get install chromium, or set $CHROMIUM")


def book_pages(html_dir: Path) -> list[Path]:
    """Every content page of the build: skips Sphinx's index/search pages and redirects."""
    pages = []
    for page in sorted(html_dir.rglob("*.html")):
        relative = page.relative_to(html_dir)
        if relative.parts[0].startswith("_") or relative.name in SKIP_PAGES:
            continue
        if 'http-equiv="Refresh"' in page.read_text(encoding="utf-8", errors="replace")[:2000]:
            continue
        pages.append(page)
    return pages


def check_page(
    tools: DevTools, session: str, page: Path, html_dir: Path, shots: Path | None, wait_s: float
) -> PageReport:
    """Load one page, let it draw, and report its charts, math, requests and errors."""
    report = PageReport(page=page.relative_to(html_dir).as_posix())
    tools.events.clear()
    tools.call("Page.navigate", session, url=page.resolve().as_uri())
    if not tools.wait_for("Page.loadEventFired", wait_s):
        report.problems.append(f"page did not finish loading in {wait_s:.0f} s")
    probe = tools.call(
        "Runtime.evaluate",
        session,
        timeout=wait_s + 30,
        expression=PAGE_PROBE % {"wait_ms": int(wait_s * 1000)},
        awaitPromise=True,
        returnByValue=True,
    )
    if "exceptionDetails" in probe:
        report.problems.append(f"page probe failed: {probe['exceptionDetails'].get('text')}")
        return report
    seen = probe["result"]["value"]
    report.charts, report.math = len(seen["charts"]), seen["math"]
    for number, chart in enumerate(seen["charts"], start=1):
        drew = chart["state"] == "drawn" and chart["embed"] and chart["width"] > 0
        if not (drew and chart["height"] > 0):
            where = f" (section {chart['section']!r})" if chart["section"] else ""
            report.problems.append(
                f"chart {number}{where} did not draw: state={chart['state']}, "
                f"size={chart['width']:.0f}x{chart['height']:.0f} {chart['error']}".rstrip()
            )
    if seen["outputs"] != len(seen["charts"]):
        report.problems.append(
            f"{seen['outputs']} chart outputs but {len(seen['charts'])} chart containers"
        )
    if seen["errorLoading"]:
        report.problems.append('page shows "Error loading script" (a renderer that needs a CDN)')
    if seen["altairStub"] or seen["missingLoader"]:
        report.problems.append(
            "a chart shows as text: call stampede.charts.enable_offline() in the import cell, "
            "and keep vega-bundle.js and stampede-charts.js in html_js_files"
        )
    if seen["mathTypeset"] < seen["math"] or seen["mathErrors"]:
        report.problems.append(
            f"math: {seen['mathTypeset']} of {seen['math']} formulas typeset, "
            f"{seen['mathErrors']} MathJax errors"
        )
    report.problems.extend(_event_problems(tools.events))
    if shots is not None:
        report.screenshot = _screenshot(tools, session, shots, report.page)
    return report


def _event_problems(events: list[dict[str, Any]]) -> list[str]:
    problems = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith(("file:", "data:", "blob:", "about:")):
                problems.append(f"network request (the book must work offline): {url}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"resource failed to load: {params.get('errorText')}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            problems.append(f"script error: {str(text).splitlines()[0]}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            problems.append(f"console error: {entry.get('text')} {entry.get('url', '')}".strip())
    return list(dict.fromkeys(problems))


def _screenshot(tools: DevTools, session: str, shots: Path, page: str) -> Path:
    size = tools.call("Page.getLayoutMetrics", session)["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000)}
    shot = tools.call(
        "Page.captureScreenshot",
        session,
        format="png",
        captureBeyondViewport=True,
        clip={**clip, "scale": 1},
    )
    path = shots / (page.removesuffix(".html").replace("/", "__") + ".png")
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def check_book(
    html_dir: Path = DEFAULT_HTML,
    screenshots: Path | None = None,
    *,
    chromium: str | None = None,
    wait_s: float = 30,
) -> list[PageReport]:
    """Check every page of the built book; raise ``BookCheckError`` listing all failures.

    ``screenshots`` defaults to ``<html_dir>/../screenshots``; pass the path you want.
    """
    html_dir = Path(html_dir)
    pages = book_pages(html_dir)
    if not pages:
        raise BookCheckError(f"no built pages under {html_dir}: build the book first")
    shots = Path(screenshots) if screenshots else html_dir.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    reports = []
    with (
        tempfile.TemporaryDirectory(prefix="check-book-") as tmp,
        open(Path(tmp) / "chromium.log", "wb") as log,
    ):
        tools = DevTools(chromium or find_chromium(), Path(tmp) / "profile", log)
        try:
            target = tools.call("Target.createTarget", url="about:blank")["targetId"]
            session = tools.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Network", "Log"):
                tools.call(f"{domain}.enable", session)
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=1280,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            for page in pages:
                reports.append(check_page(tools, session, page, html_dir, shots, wait_s))
        finally:
            tools.close()
    failures = [r for r in reports if r.problems]
    if failures:
        lines = [f"{len(failures)} of {len(reports)} book pages failed the offline check:"]
        for report in failures:
            lines.append(f"- {report.page}:")
            lines.extend(f"    {problem}" for problem in report.problems)
        raise BookCheckError("\n".join(lines))
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", nargs="?", type=Path, default=DEFAULT_HTML)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--wait", type=float, default=30, help="seconds to wait per page")
    args = parser.parse_args(argv)
    try:
        reports = check_book(args.html_dir, args.screenshots, wait_s=args.wait)
    except BookCheckError as error:
        print(error, file=sys.stderr)
        return 1
    for report in reports:
        print(
            f"ok {report.page}: {report.charts} charts drawn, {report.math} formulas, "
            f"screenshot {report.screenshot}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
