"""`sppo-bench report`: one self-contained HTML page per results store - look before you publish.

    collect.py   everything the page shows, read once from the store (and the run beside it)
    items.py     each judged prompt with every checkpoint's answer, the judge's verdict and its explanation,
                 read from the official judgment/answer files a result records
    verdicts.py  a verdict in words and classes; the spread of a judge's verdicts and the warning when it gave
                 (nearly) one verdict to everything (also printed by `sppo-bench` after a run)
    training.py  the run's loss, learning rate, win probabilities and response lengths per iteration
    plots.py     the figures, as inline SVG
    page.py      the HTML (inline CSS/SVG/script, data as gzip + base64, a CSP forbidding every request)
    cmd.py       the subcommand
    static/      the page's script and style sheet
"""

from __future__ import annotations

from .collect import Report, collect
from .page import render

__all__ = ["Report", "collect", "render"]
