"""The report page in a real browser: headless Chromium (Debian's `chromium`, driven over the DevTools protocol by
perf/browser.py; one browser for the module). Skipped, with the reason, where Chromium or websocket-client is
missing or Chromium cannot start (`.ci/run` installs it)."""

from __future__ import annotations

import struct

import pytest
from report_testutil import EVIL, EVIL_CATEGORY, EVIL_JUDGE, EVIL_PROMPT, SIZES, hostile_store, training_run

from benchmarks.report.cmd import write_report
from benchmarks.store import ResultsStore
from benchmarks.table_cmd import suite_frames
from perf.browser import BrowserUnavailable, Chromium


@pytest.fixture(scope="module")
def page_and_store(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("report-browser")
    results, _ = hostile_store(root, shared_data)
    training_run(root)
    path, report = write_report(results)
    try:
        browser = Chromium.start(root / "browser")
    except BrowserUnavailable as e:
        pytest.skip(f"no headless Chromium: {e}")
    try:
        page = browser.page()
        page.open(path.resolve().as_uri())
        assert page.wait_for("document.body.dataset.ready", timeout=60) == "1"
        yield page, results, report, path
    finally:
        browser.close()


def js(page, code: str):
    return page.evaluate(f"(() => {{ {code} }})()")


def visible_items(page, suite: str) -> int:
    return js(page, f"return document.querySelectorAll('#browse-{suite} article.item').length;")


def filtered(page, suite: str) -> int:
    return int(js(page, f"return document.getElementById('browse-{suite}').dataset.filtered;"))


def control(page, suite: str, cls: str, action: str) -> None:
    """Set one filter control and fire the event the page listens to."""
    js(page, f"const c = document.querySelector('#browse-{suite} .{cls}'); {action}; "
             "c.dispatchEvent(new Event(c.type === 'search' ? 'input' : 'change')); return 1;")


def test_loads_from_a_file_without_errors_or_any_request(page_and_store):
    page, _, _, path = page_and_store
    assert page.console_errors() == []
    assert page.requests() == [path.resolve().as_uri()]  # the document itself, nothing else
    assert page.dialogs() == []
    assert js(page, "return document.querySelectorAll('#browsers .browser').length;") == 3


def test_tables_hold_the_figures_of_sppo_bench_table(page_and_store):
    page, results, _, _ = page_and_store
    for suite, df in suite_frames(ResultsStore(results)).items():
        shown = js(page, f"return Array.from(document.querySelectorAll('#table-{suite} tbody tr'))"
                         ".map(r => Array.from(r.children).map(c => c.textContent));")
        assert shown == [[str(label), *map(str, row)] for label, row in zip(df.index, df.itertuples(index=False))]


def test_filters_change_the_visible_rows(page_and_store):
    page, _, report, _ = page_and_store
    by = {b.suite: b for b in report.browsers}
    assert visible_items(page, "alpaca_eval") == SIZES["alpaca"] and filtered(page, "alpaca_eval") == SIZES["alpaca"]
    # by verdict of one checkpoint
    alpaca = by["alpaca_eval"]
    want = "loses"
    expected = sum(want in item.cells["Iter1"].verdicts for item in alpaca.items)
    assert 0 < expected < SIZES["alpaca"]
    control(page, "alpaca_eval", "f-column", "c.value = '0'")
    control(page, "alpaca_eval", "f-verdict", f"c.value = String({alpaca.verdict_order.index(want)})")
    assert visible_items(page, "alpaca_eval") == expected == filtered(page, "alpaca_eval")
    control(page, "alpaca_eval", "f-verdict", "c.value = ''")
    control(page, "alpaca_eval", "f-column", "c.value = ''")
    # changed between iterations
    changed = sum(item.changed() for item in alpaca.items)
    control(page, "alpaca_eval", "f-changed", "c.checked = true")
    assert filtered(page, "alpaca_eval") == changed
    control(page, "alpaca_eval", "f-changed", "c.checked = false")
    # search
    control(page, "alpaca_eval", "f-search", "c.value = 'WINDOW.__PWNED'")
    page.wait_for(f"document.getElementById('browse-alpaca_eval').dataset.filtered === '1'")
    assert visible_items(page, "alpaca_eval") == 1
    control(page, "alpaca_eval", "f-search", "c.value = ''")
    page.wait_for(f"document.getElementById('browse-alpaca_eval').dataset.filtered === '{SIZES['alpaca']}'")
    # by category (MT-Bench: the hostile category holds the first question only)
    cats = sorted({item.category for item in by["mt_bench"].items})
    control(page, "mt_bench", "f-category", f"c.value = '{cats.index(EVIL_CATEGORY)}'")
    assert filtered(page, "mt_bench") == 1 and visible_items(page, "mt_bench") == 1
    control(page, "mt_bench", "f-category", "c.value = ''")
    assert filtered(page, "mt_bench") == SIZES["mt"]


def test_untrusted_text_stays_visible_text(page_and_store):
    page, _, _, _ = page_and_store
    js(page, "document.querySelectorAll('#browsers .browser').forEach(b => b.hidden = false); return 1;")
    texts = js(page, "return Array.from(document.querySelectorAll('#browsers .text')).map(e => e.textContent);")
    assert EVIL in texts and EVIL_PROMPT in texts and EVIL_JUDGE in texts
    cats = js(page, "return Array.from(document.querySelectorAll('#browse-mt_bench .cat')).map(e => e.textContent);")
    assert EVIL_CATEGORY in cats
    # none of it became markup: no element, handler, link or script of its own, nothing ran, nothing was fetched
    assert js(page, "return window.__pwned === undefined;") is True
    assert js(page, "return document.scripts.length;") == 2
    assert js(page, "return document.querySelectorAll('#browsers img, #browsers a, #browsers iframe, #browsers b, "
                    "#browsers textarea, #browsers i, #browsers [onerror], #browsers [onmouseover]').length;") == 0
    assert page.dialogs() == [] and page.console_errors() == []
    assert len(page.requests()) == 1


def test_screenshot_for_the_readme(page_and_store, tmp_path):
    page, _, _, _ = page_and_store
    js(page, "window.scrollTo(0, 0); return 1;")
    png = page.screenshot(tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1400, 1000)
    assert len(png) > 20_000  # a rendered page, not a blank one
