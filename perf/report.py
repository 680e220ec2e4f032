"""The results as a markdown report: one table of figures (ours vs the reference way, as ratios), memory, notes."""

from __future__ import annotations


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:.0f}"


def span(s: dict | None, suffix: str = "") -> str:
    if not s:
        return "—"
    if s.get("n", 0) <= 1 or s["min"] == s["max"]:
        return f"{fmt(s['median'])}{suffix}"
    return f"{fmt(s['median'])}{suffix} [{fmt(s['min'])}–{fmt(s['max'])}]"


def _memory_rows(c: dict) -> list[str]:
    """The extra table's rows of a case's peak RSS figures (fresh processes each way)."""
    rss = c.get("peak_rss_mb")
    if not rss:
        return []
    rows = [f"| {c['name']} | peak RSS MiB, ours / reference way (fresh process each) "
            f"| {span(rss['ours'])} / {span(rss['reference'])} = {span(rss['ratio'], '×')} |"]
    if rss.get("ratio_same_allocator"):
        rows.append(f"| {c['name']} | peak RSS MiB, ours / reference way with our allocator setting "
                    f"(sppo/host_memory.py) | {span(rss['ours'])} / "
                    f"{span(rss['reference_same_allocator'])} = {span(rss['ratio_same_allocator'], '×')} |")
    if rss.get("above_baseline_ratio"):
        rows.append(f"| {c['name']} | peak RSS above the process baseline "
                    f"({span(rss['process_baseline'])} MiB after imports), ours / reference way "
                    f"| {span(rss['above_baseline_ours'])} / {span(rss['above_baseline_reference'])} "
                    f"= {span(rss['above_baseline_ratio'], '×')} |")
    return rows


def render(results: dict) -> str:
    meta = results["meta"]
    lines = [f"# Performance suite — {meta['date']}", "",
             f"Machine: {meta['machine']}; torch threads {meta['threads']} ({meta['threads_reason']}); "
             f"load average at start {meta['load_average_start']}, at end {meta.get('load_average_end')}; "
             f"{'quick (tiny) sizes; ' if meta['quick'] else ''}{meta['repeats']} timed repeats per figure after a "
             "warm-up, variants interleaved; median [min–max].", "",
             f"GPU: {meta['gpu']}", "",
             "| case | metric | ours | reference way | ratio ours/ref | target | met |",
             "|---|---|---|---|---|---|---|"]
    for stage in results["stages"].values():
        if stage.get("error"):
            lines.append(f"| {stage['stage']} | — | error: {stage['error']} | | | | |")
        for c in stage["cases"]:
            ratio = span(c.get("ratio"), "×") if c.get("ratio") else "—"
            lines.append(f"| {c['name']} | {c['metric']} | {span(c['ours'])} | {span(c.get('reference'))} | {ratio} "
                         f"| {c.get('target') or '—'} | {fmt(c.get('target_met'))} |")
    extra = []
    for stage in results["stages"].values():
        for c in stage["cases"]:
            if "amortised_ratio" in c:
                extra.append(f"| {c['name']} | step incl. our one-time reference pass (amortised, 1 epoch) "
                             f"| {span(c['amortised_ratio'], '×')} |")
            if "head_only_gain" in c:
                extra.append(f"| {c['name']} | our step with the reference's full-logits log-probs / reference "
                             f"| {span(c['full_head_ratio'], '×')} |")
                extra.append(f"| {c['name']} | our step / the same with the reference's full-logits log-probs "
                             f"| {span(c['head_only_gain'], '×')} |")
            extra += _memory_rows(c)
            if c.get("runner"):
                r = c["runner"]
                extra.append(f"| {c['name']} | sppo-bench judge calls: first run / same command again / "
                             f"--rerun from the judge cache | {r['first_run']['judge_calls']} / "
                             f"{r['rerun_up_to_date']['judge_calls']} / {r['rerun_recompute_from_cache']['judge_calls']} |")
            if c.get("per_suite"):
                extra.append(f"| {c['name']} | seconds per suite | " + ", ".join(
                    f"{s} {span(v)}" for s, v in c["per_suite"].items()) + " |")
            if "scores_agree" in c:
                extra.append(f"| {c['name']} | our scores equal Blender.rank's | {fmt(c['scores_agree'])} |")
    if extra:
        lines += ["", "| case | figure | value |", "|---|---|---|", *extra]
    missing = [m for stage in results["stages"].values() for m in stage.get("not_measured", [])]
    if missing:
        lines += ["", "Not measured: " + "; ".join(f"{m['name']} ({m['why']})" for m in missing) + "."]
    lines += ["", "| stage | wall s | CPU s (its processes) | peak RSS MiB (stage process) | CUDA max allocated MiB |",
              "|---|---|---|---|---|"]
    for stage in results["stages"].values():
        lines.append(f"| {stage['stage']} | {fmt(stage.get('seconds'))} | {fmt(stage.get('cpu_seconds'))} | "
                     f"{fmt(stage.get('peak_rss_mb'))} | {fmt(stage.get('cuda_max_allocated_mb'))} |")
    lines += ["", f"Total wall time: {fmt(results['meta'].get('total_seconds'))} s.", ""]
    return "\n".join(lines)
