"""The report page at full size: AlpacaEval (805) + Arena-Hard (500) + MT-Bench (80) prompts x 3 checkpoints.

    python -m perf --stages report --repeats 3 --out perf/results/report

1. A synthetic store of that size (perf/report_store.py: the benchmarks' own questions and baselines, real model
   outputs as the checkpoints' answers and the judge's texts, so lengths and compressibility are real ones).
2. `sppo-bench report`'s work (benchmarks.report.cmd.write_report: read the store, draw the figures, write the
   page), timed; the page's size, and of it the prompt browsers' data (JSON before and after gzip + base64).
3. With headless Chromium (perf/browser.py): a fresh tab opens the file until the answers are shown (navigation,
   parsing, base64 + gzip decoding, the first page of prompts), then a search over every AlpacaEval answer and
   judge text; console errors and requests other than the file itself are counted (0 expected).

No reference-way ratio: there is no other tool to compare against. --quick: 20 + 10 + 8 prompts.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from perf.timing import case

FULL = {"alpaca": 805, "arena": 500, "mt": 80}
QUICK = {"alpaca": 20, "arena": 10, "mt": 8}


def _shared_data() -> Path:
    from perf.bench_scoring import shared_data_dir

    return shared_data_dir()


def _page_sizes(path: Path) -> dict:
    import base64
    import gzip
    import re

    page = path.read_text(encoding="utf-8")
    blob = re.search(r'id="report-data"[^>]*>([^<]*)</script>', page).group(1)
    raw = gzip.decompress(base64.b64decode(blob))
    return {"page_mb": round(path.stat().st_size / 1e6, 2), "data_base64_mb": round(len(blob) / 1e6, 2),
            "data_json_mb": round(len(raw) / 1e6, 2), "rest_of_page_mb": round((len(page) - len(blob)) / 1e6, 2)}


def _browser_times(path: Path, work: Path, repeats: int) -> dict | None:
    from perf.browser import BrowserUnavailable, Chromium

    try:
        browser = Chromium.start(work / "browser")
    except BrowserUnavailable as e:
        return {"unavailable": str(e)}
    opened, searched, busy, errors, requests = [], [], [], 0, 0
    try:
        for _ in range(repeats):
            page = browser.page()
            c0, t0 = browser.cpu_seconds(), time.perf_counter()
            page.open(path.resolve().as_uri())
            page.wait_for("document.body.dataset.ready", timeout=300)
            opened.append(time.perf_counter() - t0)
            busy.append(browser.cpu_seconds() - c0)
            t0 = time.perf_counter()
            page.evaluate("(() => { const c = document.querySelector('#browse-alpaca_eval .f-search'); "
                          "document.getElementById('browse-alpaca_eval').dataset.filtered = 'pending'; "
                          "c.value = 'zebra'; c.dispatchEvent(new Event('input')); return 1; })()")
            page.wait_for("document.getElementById('browse-alpaca_eval').dataset.filtered !== 'pending'")
            searched.append(time.perf_counter() - t0 - 0.15)  # less the search box's 150 ms debounce
            errors += len(page.console_errors())
            requests += len(page.requests()) - 1
            heap = page.metrics().get("JSHeapUsedSize")
    finally:
        browser.close()
    return {"open": opened, "cpu_s": busy, "search": searched, "console_errors": errors,
            "other_requests": requests, "js_heap_mb": round(heap / 1e6, 1) if heap else None}


def run(opts: dict) -> dict:
    from benchmarks.report.cmd import write_report
    from benchmarks.store import StoreLayout
    from perf.browser import environment_note
    from perf.report_store import StoreSpec, build_store
    from perf.timing import interleaved

    sizes = QUICK if opts["quick"] else FULL
    work = Path(opts["work"]) / "report"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    build_store(work / "results", _shared_data(), StoreSpec(**sizes))
    built = time.perf_counter() - t0
    cpu: list[float] = []

    def write() -> None:
        c0 = time.process_time()
        write_report(work / "results")
        cpu.append(time.process_time() - c0)

    times = interleaved({"write": write}, opts["repeats"])
    path = StoreLayout(work / "results").report
    settings = {**sizes, "checkpoints": 3, "store_build_s": round(built, 1), **_page_sizes(path),
                "browser": environment_note()}
    cases = [case("report/write the page", "s", times["write"], None, None, higher_is_better=False,
                  settings=settings),
             case("report/write the page, CPU time of the process", "s", cpu[-opts["repeats"]:], None, None,
                  higher_is_better=False)]
    shown = _browser_times(path, work, opts["repeats"])
    if shown and "open" in shown:
        cases.append(case("report/open in headless Chromium until the answers show", "s", shown["open"], None,
                          None, higher_is_better=False,
                          settings={k: shown[k] for k in ("console_errors", "other_requests", "js_heap_mb")}))
        cases.append(case("report/open in headless Chromium, CPU time of all its processes", "s",
                          shown["cpu_s"], None, None, higher_is_better=False))
        cases.append(case(f"report/search all {sizes['alpaca']} AlpacaEval prompts", "s", shown["search"], None,
                          None, higher_is_better=False))
    return {"cases": cases, "report_md": _markdown(settings, shown)}


def _markdown(settings: dict, shown: dict | None) -> str:
    lines = [f"{settings['alpaca']} AlpacaEval + {settings['arena']} Arena-Hard + {settings['mt']} MT-Bench prompts "
             f"x {settings['checkpoints']} checkpoints: page {settings['page_mb']} MB, of which the prompt browsers' "
             f"data {settings['data_base64_mb']} MB (gzip + base64 of {settings['data_json_mb']} MB of JSON) and "
             f"the rest (tables, figures, script) {settings['rest_of_page_mb']} MB. Browser: {settings['browser']}."]
    if shown and "unavailable" in shown:
        lines.append(f"No browser timing: {shown['unavailable']}.")
    elif shown:
        lines.append(f"In the browser: {shown['console_errors']} console errors, {shown['other_requests']} requests "
                     f"besides the file, JS heap after loading {shown['js_heap_mb']} MB.")
    return "\n\n".join(lines) + "\n"
