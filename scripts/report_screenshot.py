"""Screenshots of a report page in headless Chromium (perf/browser.py), as the README shows them.

    .venv/bin/python scripts/report_screenshot.py runs/embedded/results/report.html docs/report.png \
        [--answers docs/report-answers.png] [--width 1400] [--height 1500]

The first image is the top of the page (warnings, tables, plots); --answers also takes the prompt browser
(AlpacaEval's first prompts, a judge explanation opened).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf.browser import Chromium  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("page", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--answers", type=Path, help="also a screenshot of the prompt browser")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1500)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as work, Chromium.start(Path(work)) as browser:
        page = browser.page(args.width, args.height)
        page.open(args.page.resolve().as_uri())
        page.wait_for("document.body.dataset.ready")
        page.screenshot(args.out)
        print(f"wrote {args.out}")
        if args.answers:
            page.evaluate("(() => { const d = document.querySelector('#browsers details.judge'); if (d) d.open = true;"
                          " document.getElementById('answers').scrollIntoView(); return 1; })()")
            page.screenshot(args.answers)
            print(f"wrote {args.answers}")
        errors = page.console_errors()
    if errors:
        print(f"console errors: {errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
