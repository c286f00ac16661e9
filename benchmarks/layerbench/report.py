"""The Markdown report (``benchmarks/RESULTS.md``) of one benchmark run."""

from __future__ import annotations

import time

from .targets import issue19_check, rows_by_key, target_check
from .workloads import WORKLOADS


def _ms(seconds):
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def _ratio(a, b):
    return "—" if a is None or b is None else f"{a / b:.2f}"


def tables(results):
    """Markdown tables, one per thread count, and the rows for the target check."""
    lines = []
    for res in results:
        t = res["threads"]
        lines.append(f"### {t} thread{'s' if t > 1 else ''}\n")
        lines.append("Median ms per call (minimum in parentheses); ratios of medians.\n")
        lines.append(
            "| workload | pass | cnnpool | torch | NumPy | copy floor "
            "| cnnpool / torch | cnnpool / floor |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for (key, pass_name), row in rows_by_key(res).items():

            def cell(name, row=row):
                if name not in row:
                    return "—"
                return f"{_ms(row[name]['median'])} ({_ms(row[name]['min'])})"

            cp_med = row["cnnpool"]["median"]
            tm = row.get("torch", {}).get("median")
            fl = row.get("floor", {}).get("median")
            lines.append(
                f"| {key} | {pass_name} | {cell('cnnpool')} | {cell('torch')} "
                f"| {cell('numpy')} | {cell('floor')} | {_ratio(cp_med, tm)} "
                f"| {_ratio(cp_med, fl)} |"
            )
        for note in res["notes"]:
            lines.append(f"\n*{note}*")
        lines.append("")
    return "\n".join(lines)


def scaling_table(results):
    """cnnpool on 1 thread against all threads, timed alternately in one process."""
    lines = []
    for res in results:
        t = res["threads"]
        rows = {
            k: r for k, r in rows_by_key(res).items() if "cnnpool@1" in r and f"cnnpool@{t}" in r
        }
        if not rows:
            continue
        lines.append(f"### cnnpool on 1 thread and on {t}, interleaved in one process\n")
        lines.append(
            "Median ms per call (minimum in parentheses), A B A B ... with "
            "`cnnpool.set_num_threads`, so both see the same machine.  Small "
            "workloads stay on one thread by design (`threads_for`): their ratio "
            "is the noise of identical code.\n"
        )
        lines.append(f"| workload | pass | 1 thread | {t} threads | {t} / 1 |")
        lines.append("|---|---|---|---|---|")
        for (key, pass_name), row in rows.items():
            a, b = row["cnnpool@1"], row[f"cnnpool@{t}"]
            lines.append(
                f"| {key} | {pass_name} | {_ms(a['median'])} ({_ms(a['min'])}) "
                f"| {_ms(b['median'])} ({_ms(b['min'])}) | {_ratio(b['median'], a['median'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def render(results, memory, args):
    m = results[0]["machine"]
    md = ["# cnnpool benchmark results", ""]
    md.append(
        "Produced by `python benchmarks/bench_layers.py"
        + (" --quick" if args.quick else "")
        + "`"
        + f" on {time.strftime('%Y-%m-%d')}.  Times are per call; "
        "competitors were timed interleaved in one process per thread count, "
        "so ratios are more trustworthy than absolute times on a shared machine."
    )
    md.append("")
    if getattr(args, "note", ""):
        md.append(f"**Note.** {args.note}")
        md.append("")
    md.append("## Machine")
    md.append("")
    md.append(
        f"- CPU: {m['cpu']}, {m['logical_cpus']} logical CPUs"
        + (f" ({m['simd']})" if m.get("simd") else "")
    )
    md.append(f"- {m['platform']}, Python {m['python']}")
    md.append(f"- NumPy {m['numpy']} (BLAS: {m['blas']})")
    torch_line = f"- PyTorch {m['torch']}" if m["torch"] else "- PyTorch: not installed"
    if m.get("torch_mkldnn") is not None:
        torch_line += f" (oneDNN available: {m['torch_mkldnn']})"
    md.append(torch_line)
    md.append(f"- cnnpool {m['cnnpool']} (OpenMP: {m['cnnpool_openmp']})")
    loads = [res["machine"].get("load_average") for res in results]
    if any(loads):
        md.append(
            "- load average (1 min) when each thread count started: "
            + ", ".join(
                f"{res['threads']} thread(s): {res['machine'].get('load_average')}"
                for res in results
            )
            + " (a load above the core count means other work shared the CPUs: "
            "trust minimums and ratios over medians)"
        )
    md.append("")
    measured = {r["workload"] for res in results for r in res["records"]}
    md.append("## Workloads")
    md.append("")
    for key, work in WORKLOADS.items():
        if key in measured:
            md.append(f"- **{key}**: {work.description}")
    md.append("")
    md.append(
        "The memory floor is `np.copyto` of the same input into a preallocated "
        "array (read it once, write it once), timed in the same run."
    )
    md.append("")
    md.append("## Times")
    md.append("")
    md.append(tables(results))
    md.append(scaling_table(results))
    for title, checks in (
        ("Targets (issue 5)", target_check(results)),
        ("Targets (issue 19)", issue19_check(results, memory)),
    ):
        if checks:
            md.append(f"## {title}")
            md.append("")
            md.append("| target | measured | |")
            md.append("|---|---|---|")
            for row in checks:
                md.append(f"| {row[0]} | {row[1]} | {row[2]} |")
            md.append("")
    if memory:
        md.append("## Peak memory of one training step")
        md.append("")
        md.append(
            "Each library in a fresh process, one thread, after building the "
            "model and its input: the high-water mark of the resident set "
            "(VmHWM) over the first three steps above the resident set before "
            "them (the peak: buffers kept between steps count), its growth "
            "during the first step, and during a later (warm) step alone; for "
            "cnnpool also the tracemalloc peak of a warm step (NumPy's "
            "allocations)."
        )
        md.append("")
        md.append(
            "| step | library | peak over 3 steps | growth, first step "
            "| growth, warm step | tracemalloc peak, warm step |"
        )
        md.append("|---|---|---|---|---|---|")

        def mib(v):
            return "—" if v is None else f"{v / 2**20:.1f} MiB"

        for step, libs in memory.items():
            for lib, mem in libs.items():
                md.append(
                    f"| {step} | {lib} | {mib(mem.get('rss_peak_three_steps'))} "
                    f"| {mib(mem.get('rss_growth_first_step'))} "
                    f"| {mib(mem.get('rss_growth_warm_step'))} "
                    f"| {mib(mem.get('tracemalloc_peak'))} |"
                )
        md.append("")
    return "\n".join(md) + "\n"
