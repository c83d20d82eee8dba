"""The report as a browser shows it (headless Chromium through Playwright; skipped where
either is missing): nothing wider than the page, and no two labels of a plot on top of
each other, even with many marks close together."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from host.report import write_report
from tests.test_record import T0, make_run
from tests.test_report import _analyzer_run

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")  # in the test extra: always there
if not Path(CHROMIUM).exists():
    # `make test` installs it (Makefile: browser): a missing browser is a failure, not a skip.
    pytest.fail("no chromium: install the Debian package 'chromium'", pytrace=False)

# Every pair of <text> boxes inside one <svg> that overlap by more than 1 px each way.
OVERLAPS = """() => {
  const out = [];
  for (const svg of document.querySelectorAll('figure svg')) {
    const boxes = [...svg.querySelectorAll('text')]
      .map(t => [t.textContent.trim(), t.getBoundingClientRect()])
      .filter(([s, r]) => s && r.width > 0);
    for (let i = 0; i < boxes.length; i++)
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, ra] = boxes[i], [b, rb] = boxes[j];
        const dx = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
        const dy = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
        if (dx > 1 && dy > 1) out.push(svg.closest('figure').ariaLabel + ': ' + a + ' / ' + b);
      }
  }
  return out;
}"""
# Every <text> of a figure that sticks out of its <svg>: a cut label.
CUT = """() => {
  const out = [];
  for (const svg of document.querySelectorAll('figure svg')) {
    const f = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll('text')) {
      const r = t.getBoundingClientRect();
      if (r.width && (r.left < f.left - 1 || r.right > f.right + 1 || r.top < f.top - 1
                      || r.bottom > f.bottom + 1)) out.push(t.textContent.trim());
    }
  }
  return out;
}"""


def _crowded_run(tmp_path):
    """Six alarms within four seconds, short phases with long names, a gap."""
    rec = make_run(tmp_path, restart=True)
    rec = type(rec).open(rec.path)
    for i in range(6):
        rec.add_event(
            T0 + 5300 + i * 10,
            "reactor1",
            {"number": 10 + i, "t_ms": 1, "type": 0, "severity": 1, "cause": f"cause_{i}"},
        )
    for i, name in enumerate(("switch-to-reagents", "steady-state", "equilibrate")):
        rec.add_phase(T0 + 5400 + i * 50, name, None, name)
    return rec


@pytest.mark.parametrize("make", [make_run, _analyzer_run, _crowded_run])
def test_the_report_in_chromium_has_no_overlapping_or_cut_labels(tmp_path, make):
    rec = make(tmp_path)
    rec.close()
    html = write_report(rec.path, tmp_path / "out")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1150, "height": 900})
            page.goto(html.as_uri())
            assert page.evaluate("document.querySelectorAll('figure svg').length") >= 2
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 1150  # nothing wider than the window
            assert page.evaluate(OVERLAPS) == []
            assert page.evaluate(CUT) == []
        finally:
            browser.close()
