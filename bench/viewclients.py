"""The live view benchmark's clients: SSE viewers, a stalled viewer, and the browser probes.

* ``ReadingViewers``: a separate process holding ``n`` SSE connections to the view's
  event stream, each reading as fast as the server sends (raw asyncio sockets, so the
  clients' own CPU stays out of the server's measurement and small).
* ``StalledViewer``: one connection that sends its request and then never reads, with a
  small receive buffer, so the server's writes to it block as soon as the socket buffers
  fill: what a frozen browser tab or a viewer behind a dead link looks like.
* ``PageProbe``: the real page in Debian's Chromium (Playwright, no browser download):
  main-thread long tasks (``PerformanceObserver`` ``longtask`` entries: every task over
  50 ms, with its duration) and the JS heap after a forced garbage collection (CDP
  ``HeapProfiler.collectGarbage`` then ``Runtime.getHeapUsage``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import socket
import time
from urllib.parse import urlsplit

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# Installed before any of the page's scripts run: every long task of the page's life,
# and a reset so a measuring window can start after the page has loaded.
LONGTASK_SCRIPT = """
(() => {
  const lt = { count: 0, max: 0, total: 0, all: [] };
  window.__viewbenchLongtasks = lt;
  window.__viewbenchReset = () => { lt.count = 0; lt.max = 0; lt.total = 0; lt.all = []; };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      lt.count += 1;
      lt.total += e.duration;
      if (e.duration > lt.max) lt.max = e.duration;
      if (lt.all.length < 200) lt.all.push([Math.round(e.startTime), Math.round(e.duration)]);
    }
  }).observe({ type: "longtask", buffered: true });
})();
"""


def _request(url: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    head = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    )
    return parts.hostname or "127.0.0.1", parts.port or 80, head.encode()


# --- reading viewers (their own process) ---------------------------------------------------


async def _read_one(url: str, counts: list, index: int, stop: asyncio.Event) -> None:
    host, port, request = _request(url)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    try:
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                continue
            if not chunk:
                break
            counts[index][0] += len(chunk)
            counts[index][1] += chunk.count(b"\n\n")
    finally:
        writer.close()


async def _viewers(url: str, n: int, conn) -> None:
    stop = asyncio.Event()
    counts = [[0, 0] for _ in range(n)]
    tasks = [asyncio.create_task(_read_one(url, counts, i, stop)) for i in range(n)]
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.2)
    conn.send("connected")
    await loop.run_in_executor(None, conn.recv)  # any message: stop
    stop.set()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    errors = [repr(x) for x in done if isinstance(x, BaseException)]
    conn.send({"bytes": [c[0] for c in counts], "events": [c[1] for c in counts], "errors": errors})


def _viewers_main(url: str, n: int, conn) -> None:
    asyncio.run(_viewers(url, n, conn))


class ReadingViewers:
    """``n`` SSE viewers of ``url`` in their own process, reading everything; ``stop()``
    returns per viewer the bytes and events (blank-line-terminated SSE messages) read."""

    def __init__(self, url: str, n: int):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_viewers_main, args=(url, n, child), daemon=True)
        self._proc.start()
        if not self._conn.poll(30) or self._conn.recv() != "connected":
            self._proc.terminate()
            raise RuntimeError(f"{n} SSE viewers of {url} did not connect within 30 s")

    def stop(self) -> dict:
        self._conn.send("stop")
        if not self._conn.poll(30):
            self._proc.terminate()
            raise RuntimeError("the SSE viewers did not stop within 30 s")
        result = self._conn.recv()
        self._proc.join(10)
        return result


# --- the stalled viewer ------------------------------------------------------------------------


class StalledViewer:
    """One SSE connection that never reads (receive buffer shrunk to 4 KiB); ``close()``
    ends it."""

    def __init__(self, url: str):
        host, port, request = _request(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((host, port))
        self.sock.sendall(request)

    def close(self) -> None:
        self.sock.close()


# --- the page in Chromium ------------------------------------------------------------------------


def _longtasks(page) -> dict:
    lt = page.evaluate("window.__viewbenchLongtasks")
    return {"count": lt["count"], "max_ms": lt["max"], "total_ms": lt["total"], "tasks": lt["all"]}


class PageProbe:
    """The view's page in headless Chromium.  ``open(url)`` loads it with the long-task
    observer installed; ``reset_longtasks()`` starts a window; ``longtasks()`` reads it;
    ``heap_mb()`` forces a GC and returns the used JS heap in MB."""

    def __init__(self):
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--enable-precise-memory-info"],
        )
        self.page = self.browser.new_page(viewport={"width": 1600, "height": 1000})
        self.page.add_init_script(LONGTASK_SCRIPT)
        self.cdp = self.page.context.new_cdp_session(self.page)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def open(self, url: str, ready_selector: str | None = None, timeout_s: float = 30) -> None:
        self.page.goto(url, wait_until="load", timeout=timeout_s * 1000)
        if ready_selector:
            self.page.wait_for_selector(ready_selector, timeout=timeout_s * 1000)

    def opening_longtasks(self, url: str, settle_s: float) -> dict:
        """Open ``url`` in a second tab, let it settle ``settle_s``, and return its long
        tasks (``longtasks``' fields) from the start: what opening the page costs."""
        page = self.browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.add_init_script(LONGTASK_SCRIPT)
            page.goto(url, wait_until="load")
            page.wait_for_timeout(settle_s * 1000)
            return _longtasks(page)
        finally:
            page.close()

    def reset_longtasks(self) -> None:
        self.page.evaluate("window.__viewbenchReset()")

    def longtasks(self) -> dict:
        """``count`` (tasks over 50 ms), ``max_ms``, ``total_ms``, ``tasks`` [[start, ms]]."""
        return _longtasks(self.page)

    def heap_mb(self) -> float:
        self.cdp.send("HeapProfiler.collectGarbage")
        used = self.cdp.send("Runtime.getHeapUsage")["usedSize"]
        return used / 1e6

    def wait(self, seconds: float) -> None:
        """Let the page run for ``seconds`` (Playwright keeps its event loop turning)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.page.wait_for_timeout(min(1000, left * 1000))

    def screenshot(self, path) -> None:
        self.page.screenshot(path=str(path), full_page=True)

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self._pw.stop()
