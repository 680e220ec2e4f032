"""The figures the READMEs quote, rendered from the committed results: never typed by hand.

A quoted block sits between two markers in a Markdown file, the first naming what it renders and from which file:

    <!-- figures: suite perf/results/latest.json -->
    (rendered text)
    <!-- /figures -->

`python -m perf.readme` renders every block of README.md and perf/README.md again from its file;
`python -m perf`, `python -m perf.bench_e2e` and `python -m perf.learning` do it themselves when they write their
results to the committed place (perf/results/...). tests/test_perf_readme.py fails when a block differs from what its
file renders, so a README can only quote the committed results.

Kinds: `suite` (the ratios of `python -m perf`), `e2e` (the quick start's commands, one line), `e2e-stages` (its
per-stage table with each stage's share), `learning` (the learning check, both rankers).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPT_IN = {"e2e": "the quick start's table below, `python -m perf.bench_e2e`",
          "vllm": "vLLM's CPU build, `python -m perf --stages vllm --out perf/results/vllm-cpu`",
          "attention": "a decoding step's attention, `python -m perf --stages attention --out perf/results/attention`"}
DOCS = (ROOT / "README.md", ROOT / "perf" / "README.md")
BLOCK = re.compile(r"(<!-- figures: (?P<kind>[\w-]+) (?P<source>\S+) -->\n)(?P<body>.*?)(<!-- /figures -->)", re.S)


def _span(s: dict | None, suffix: str = "×") -> str:
    from perf.report import span

    return span(s, suffix)


def _when(meta: dict) -> str:
    load = f"load average {meta.get('load_average_start')} at start, {meta.get('load_average_end')} at end"
    return f"{meta.get('date', 'date not recorded')}, git {meta.get('git_commit') or '?'}, {load}"


def suite(results: dict, source: str) -> str:
    """The ratio of every case of one `python -m perf` run, with its target, and what ran where."""
    meta = results["meta"]
    seconds = ", ".join(f"{name} {s.get('seconds', 0):.0f} s" for name, s in results["stages"].items())
    lines = [f"One run of `python -m perf{' --quick' if meta.get('quick') else ''}` (`{source}`): {_when(meta)}; "
             f"torch threads {meta['threads']}; {meta['repeats']} timed repeats per figure, median [min–max]; "
             f"{meta.get('total_seconds', 0):.0f} s in all ({seconds}).", "",
             "| case | figure | ours / reference way | target | met |", "|---|---|---|---|---|"]
    for stage in results["stages"].values():
        if stage.get("error"):
            lines.append(f"| {stage['stage']} | — | error: {stage['error']} | | |")
        for c in stage["cases"]:
            ratio = _span(c["ratio"]) if c.get("ratio") else _span(c["ours"], f" {c['metric']}")
            met = {True: "yes", False: "no", None: "—"}[c.get("target_met")]
            lines.append(f"| {c['name']} | {c['metric']} | {ratio} | {c.get('target') or '—'} | {met} |")
            rss = c.get("peak_rss_mb")
            if rss and stage["stage"] == "training":
                lines.append(f"| {c['name']} | peak RSS while training | {_span(rss['ours'], ' MiB')} / "
                             f"{_span(rss['reference'], ' MiB')} = {_span(rss['ratio'])} | <= 0.85x | "
                             f"{'yes' if rss['ratio']['median'] <= 0.85 else 'no'} |")
            if c.get("runner"):
                lines.append(f"| {c['name']} | judge calls of the same command again | "
                             f"{c['runner']['rerun_up_to_date']['judge_calls']} | 0 | "
                             f"{'yes' if c['runner']['rerun_up_to_date']['judge_calls'] == 0 else 'no'} |")
    missing = [m for s in results["stages"].values() for m in s.get("not_measured", [])]
    if missing:
        lines += ["", "Not measured: " + "; ".join(f"`{m['name']}` ({m['why']})" for m in missing) + "."]
    opt_in = [s for s in OPT_IN if s not in results["stages"]]
    if opt_in:
        lines += ["", "Opt-in stages, not in this run: " + ", ".join(f"`{s}` ({OPT_IN[s]})" for s in opt_in) + "."]
    return "\n".join(lines) + "\n"


def e2e_total(result: dict) -> float:
    return sum(c["seconds"] for c in result["commands"].values())


def e2e(result: dict, source: str) -> str:
    """One sentence: each command's wall time and the total."""
    parts = ", ".join(f"`{name}` {c['seconds']:.0f} s" for name, c in result["commands"].items())
    total = e2e_total(result)
    return (f"Measured by `python -m perf.bench_e2e` (`{source}`; {_when(result.get('meta', {}))}; "
            f"OMP_NUM_THREADS {result.get('meta', {}).get('threads', '?')}): {parts}; "
            f"**{total:.0f} s ({total / 60:.1f} min)** in all.\n")


def _stage_key(row: dict) -> str:
    """A per-stage row's stage, summed over iterations and checkpoints: "generate", "arena_hard judging", ..."""
    if row["tool"] != "bench" or "/" not in row["stage"]:
        return row["stage"]
    suite_name, part = row["stage"].split("/", 1)
    suite_name = suite_name.split(" ")[0]
    return suite_name if part.startswith("all") else f"{suite_name} {part}"


def e2e_stages(result: dict, source: str) -> str:
    """Every stage's seconds and share of the total, grouped by command."""
    total = e2e_total(result)
    groups: dict[tuple[str, str], float] = {}
    for r in result["rows"]:
        key = (r["tool"], _stage_key(r))
        groups[key] = groups.get(key, 0.0) + r["seconds"]
    lines = [e2e(result, source), "| command | stage (summed over iterations / checkpoints) | seconds | share |",
             "|---|---|---|---|"]
    lines += [f"| {tool} | {stage} | {s:.1f} | {100 * s / total:.1f} % |" for (tool, stage), s in groups.items()]
    lines += [f"| {name} | **total** | {c['seconds']:.1f} | {100 * c['seconds'] / total:.1f} % |"
              for name, c in result["commands"].items()]
    return "\n".join(lines) + "\n"


def learning(result: dict, source: str) -> str:
    """Both rankers' printed figures, the verdict, and what each command cost."""
    from sppo.learning_check import Summary, report

    out = [f"Measured by `python -m perf.learning` (`{source}`; {_when(result['meta'])}; "
           f"OMP_NUM_THREADS {result['meta'].get('threads', '?')}):", "", "```"]
    for name, run in result["runs"].items():
        out += [f"$ sppo-train --config learning-check{run['overrides']}", report(Summary.from_dict(run["summary"])),
                f"({run['wall_seconds']:.0f} s wall, {run['cpu_seconds'] / 60:.1f} min of CPU time, "
                f"{run['peak_rss_mb'] / 1024:.1f} GiB peak memory)", ""]
    return "\n".join(out[:-1] + ["```"]) + "\n"


RENDER = {"suite": suite, "e2e": e2e, "e2e-stages": e2e_stages, "learning": learning}


def rendered(text: str, only_source: str | None = None) -> str:
    """`text` with every figures block (those quoting `only_source`, when given) rendered again from its source
    file; other blocks stay as they are (their files may not exist yet)."""
    def one(m: re.Match) -> str:
        if only_source and m["source"] != only_source:
            return m.group(0)
        data = json.loads((ROOT / m["source"]).read_text())
        return m.group(1) + RENDER[m["kind"]](data, m["source"]) + m.group(5)

    return BLOCK.sub(one, text)


def update(docs=DOCS, only_source: str | None = None) -> list[Path]:
    """Render the blocks of `docs` again (those quoting `only_source`, when given); the files changed."""
    changed = []
    for doc in docs:
        text = doc.read_text()
        if only_source and f" {only_source} -->" not in text:
            continue
        new = rendered(text, only_source)
        if new != text:
            doc.write_text(new)
            changed.append(doc)
    return changed


def update_if_committed(out: Path, source_name: str) -> None:
    """After a run wrote `out/source_name`: when that is the committed place, the READMEs quote it now."""
    try:
        rel = (Path(out).resolve() / source_name).relative_to(ROOT).as_posix()
    except ValueError:
        return
    for doc in update(only_source=rel):
        print(f"[perf] {doc.relative_to(ROOT)}: figures from {rel}", file=sys.stderr)


if __name__ == "__main__":
    for path in update():
        print(f"updated {path.relative_to(ROOT)}")
