"""Paper Tables 1 and 6 from logged runs, as Markdown, LaTeX and CSV.

    python scripts/make_tables.py [--runs DIR] [--out DIR]

Table 1 averages the runs of `python train.py experiment=table1`, Table 6 those of
`experiment=table6`: a run counts when its config.yaml is the config Hydra composes for
that experiment at the run's task, beta and seed (keys that do not change the number,
rine.results.NOT_COMPARED, aside), and each (task, beta, seed, data) counts once, the newest
copy kept (rine.results.drop_duplicates). A cell averaging runs whose decoders still
disagree (constraint_met false) is marked † with a note that counts them; β = 0 asks no
agreement, so its column is labelled the mean usable information and never marked. Every other run
under --runs (another setting, a short debug run, a copy, a failed, unfinished or invalid
run, a null or NaN estimate) is listed with the reason and never averaged in. The tasks
and betas of each table are the experiment's sweep (configs/experiment/<table>.yaml).

Each cell: I^V as mean ± std over seeds with n, and the 95% t-interval, beside the exact
measures of each distribution: the true redundancy, I∧ (computed here) and dit's I_GH,
BROJA, MMI, I_min and I∩^≺ (from the cache made by `make reference-values`), and the
paper's printed values, labelled as the paper's. The LaTeX tables (booktabs, written by
pandas' Styler) give one row per task and beta so that they fit a page.
"""

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from rine.errors import RineError  # noqa: E402
from rine.files import check_out_dir, write_text_atomic  # noqa: E402
from rine.results import (DISAGREE_MARK, USABLE_LABEL, disagreeing, disagreement_note, experiment_points,  # noqa: E402
                          load_results, match_experiment, no_agreement_asked)
from rine.references import DIT_MEASURES, describe, dit_references  # noqa: E402
from rine.config import build, compose_config  # noqa: E402
from rine.stats import CI_LEVEL, format_ci, format_mean_std, mean_std, t_interval  # noqa: E402

TASKS = {"unq": "UNQ", "and": "AND", "rdnxor": "RDNXOR", "imperfectrdn": "IMPERFECTRDN"}
# Printed in the paper (Tables 1 and 6), I^V at beta = 0, 5, 15.
PAPER = {
    "unq": {0: 0.987, 5: 0.613, 15: 0.011},
    "and": {0: 0.310, 5: -0.001, 15: -0.017},
    "rdnxor": {0: 0.991, 5: 0.988, 15: 0.967},
    "imperfectrdn": {0: 0.989, 5: 0.988, 15: 0.989},
}
# Table -> the experiment config whose runs it averages.
TABLES = {"table1": "table1", "table6": "table6"}
# Exact measure: (Markdown, LaTeX) labels.
MEASURE_LABELS = {"i_gh": ("I_GH", r"$I_\cap^{\mathrm{GH}}$"), "i_broja": ("I_BROJA", r"$I_\cap^{\mathrm{BROJA}}$"),
                  "i_mmi": ("I_MMI", r"$I_\cap^{\mathrm{MMI}}$"), "i_min": ("I_min", r"$I_{\min}$"),
                  "i_prec": ("I^≺", r"$I_\cap^{\prec}$")}
EXACT_LABELS = {"True": ("True", "True"), "I∧": ("I∧", r"$I_\cap^{\wedge}$"), **MEASURE_LABELS}
# (Markdown, LaTeX): the same notes under both; {n}: the experiment's report.last_epochs.
FOOTNOTES = [
    ("I^V: this repo's RINE estimate on the held-out split (mean of the last {n} epochs), mean ± std over seeds "
     "(n seeds; one seed shows no spread) and the 95% Student-t confidence interval of the mean.",
     r"$I_\cap^{{\mathcal{{V}}}}$: this repo's RINE estimate on the held-out split (mean of the last {n} epochs), "
     r"mean $\pm$ std over seeds ($n$ seeds; one seed shows no spread) and the 95\% Student-$t$ confidence "
     r"interval of the mean. Paper: the values printed in the paper."),
    ("I_GH and the other dit measures are dit 2.3's values (PID_GH seeded); the paper's Table 1 prints "
     "I_GH(AND) = 0, dit computes 0.123 bits.",
     r"$I_\cap^{\mathrm{GH}}$ and the other dit measures are dit 2.3's values (PID\_GH seeded); the paper's "
     r"Table 1 prints $I_\cap^{\mathrm{GH}}(\mathrm{AND}) = 0$, dit computes 0.123 bits."),
    ("n/a (timeout): dit did not finish within the time budget of `make reference-values`.",
     r"n/a (timeout): dit did not finish within the time budget of \texttt{make reference-values}."),
    ("True: the accepted redundancy; AND's [0, 0.311] spans I∧ to min_i I(Xi;Y).",
     r"True: the accepted redundancy; AND's [0, 0.311] spans $I_\cap^{\wedge}$ to $\min_i I(X_i;Y)$."),
]

# β = 0 (Markdown, LaTeX): no agreement term, so the figure is not a redundancy, and never marked †.
USABLE_NOTE = (f"β = 0: no agreement asked, so I^V is the decoders' {USABLE_LABEL}, not a redundancy.",
               rf"$\beta = 0$: no agreement asked, so $I_\cap^{{\mathcal{{V}}}}$ is the decoders' {USABLE_LABEL}, "
               "not a redundancy.")


def exact_columns(task: str) -> dict:
    """The exact measures of a canonical task's distribution (from the caches, never slow)."""
    data_task = build(compose_config([f"task={task}", "task.reference_timeout_s=0"]).task)
    reference = data_task.pmf.exact_measures()
    low, high = [reference[m] for m in data_task.true_redundancy]
    entries = dit_references(data_task.pmf, timeout_s=0)
    row = {
        "True": f"{low:.3g}" if abs(high - low) < 5e-4 else f"[{low:.3g}, {high:.3g}]",
        "I∧": f"{reference['i_wedge']:.3f}",
    }
    for measure in MEASURE_LABELS:
        row[measure] = describe(entries[measure])
    numbers = {"true_low": low, "true_high": high, "i_wedge": reference["i_wedge"]}
    numbers.update({m: entries[m].get("value") for m in DIT_MEASURES})
    return {"display": row, "numbers": numbers}


def sweep_of(points: list[dict]) -> tuple[list[str], list]:
    """The tasks (in sweep order) and betas (ascending) of an experiment's sweep points."""
    tasks = list(dict.fromkeys(p["task.name"] for p in points))
    return tasks, sorted(set(p["beta"] for p in points))


def paper_value(task: str, beta) -> str:
    value = PAPER.get(task, {}).get(beta)
    return "–" if value is None else f"{value:.3f}"


def cell_runs(runs: pd.DataFrame, task: str, beta) -> pd.DataFrame:
    if runs.empty:
        return runs
    return runs.loc[(runs["task"] == task) & (runs["beta"] == beta)]


def redundancy_of(runs: pd.DataFrame, task: str, beta) -> pd.Series:
    chosen = cell_runs(runs, task, beta)
    return chosen["redundancy_bits"].astype(float) if len(chosen) else pd.Series([], dtype=float)


def disagreement_counts(runs: pd.DataFrame, tasks: list[str], betas: list) -> list[tuple[str, int, int]]:
    """(cell, runs whose decoders still disagree, runs) of each cell, for the † note."""
    counts = []
    for task in tasks:
        for beta in betas:
            chosen = cell_runs(runs, task, beta)
            counts.append((f"{TASKS.get(task, task)} β = {beta:g}", int(disagreeing(chosen).sum()), len(chosen)))
    return counts


def estimate_header(beta) -> str:
    """β = 0 asks no agreement: its column is the mean usable information, said in the header."""
    return f"I^V β={beta:g}" + (f" ({USABLE_LABEL})" if no_agreement_asked(beta) else "")


def marked(text: str, chosen: pd.DataFrame, mark: str = f" {DISAGREE_MARK}") -> str:
    """The cell's text, marked when any of its runs' decoders still disagree."""
    return text + mark if len(chosen) and disagreeing(chosen).any() else text


def build_table(runs: pd.DataFrame, tasks: list[str], betas: list, exact: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Markdown table (one row per task) and the CSV numbers."""
    display, numbers = [], []
    for task in tasks:
        shown = {"Task": TASKS.get(task, task), **{EXACT_LABELS[k][0]: v for k, v in exact[task]["display"].items()}}
        raw = {"task": task, **exact[task]["numbers"]}
        for beta in betas:
            values = redundancy_of(runs, task, beta)
            chosen = cell_runs(runs, task, beta)
            shown[estimate_header(beta)] = marked(format_mean_std(values), chosen)
            mean, std, n = mean_std(values)
            low, high = t_interval(values)
            raw.update({f"beta{beta:g}_mean": mean, f"beta{beta:g}_std": std, f"beta{beta:g}_n": n,
                        f"beta{beta:g}_ci_low": low, f"beta{beta:g}_ci_high": high,
                        f"beta{beta:g}_disagreeing": int(disagreeing(chosen).sum()) if len(chosen) else 0})
        shown["Paper I^V (β=" + ", ".join(f"{b:g}" for b in betas) + ")"] = " / ".join(paper_value(task, b) for b in betas)
        raw.update({f"paper_beta{b:g}": PAPER.get(task, {}).get(b) for b in betas})
        display.append(shown)
        numbers.append(raw)
    return pd.DataFrame(display), pd.DataFrame(numbers)


def latex_frame(runs: pd.DataFrame, tasks: list[str], betas: list, exact: dict) -> pd.DataFrame:
    """The LaTeX layout: one column per task, one row per exact measure and, per beta, rows
    for I^V (mean ± std), its CI, n (seeds) and the paper's value: narrow enough for even
    Table 6 to fit a page. Cells are LaTeX math where they need it; the Styler escapes the rest."""
    rows = [{"": label_tex, **{TASKS.get(t, t): exact[t]["display"][key] for t in tasks}}
            for key, (_, label_tex) in EXACT_LABELS.items()]
    for beta in betas:
        estimate = {"": rf"$I_\cap^{{\mathcal{{V}}}}$, $\beta = {beta:g}$"
                        + (" (usable info.)" if no_agreement_asked(beta) else "")}
        interval = {"": rf"$\quad$ {CI_LEVEL:.0%} CI"}
        seeds = {"": r"$\quad$ $n$ (seeds)"}
        paper = {"": r"$\quad$ paper"}
        for task in tasks:
            values, column = redundancy_of(runs, task, beta), TASKS.get(task, task)
            estimate[column] = marked(format_mean_std(values, ci=False, show_n=False).replace("±", r"$\pm$"),
                                      cell_runs(runs, task, beta), r"$^{\dagger}$")
            interval[column] = format_ci(values).replace(f"{CI_LEVEL:.0%} CI ", "")
            seeds[column] = str(mean_std(values)[2])
            paper[column] = paper_value(task, beta)
        rows += [estimate, interval, seeds, paper]
    return pd.DataFrame([{k: tex_number(v) for k, v in row.items()} for row in rows])


def tex_number(text: str) -> str:
    """Minus signs as math, the missing-value dash as an en dash, for pdflatex."""
    return re.sub(r"(?<![-\w])-(?=\d)", "$-$", str(text)).replace("–", "--")


def to_markdown(frame: pd.DataFrame, title: str, notes: list[str]) -> str:
    lines = [f"## {title}", "", "| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def to_latex(frame: pd.DataFrame, caption: str, label: str, notes: list[str]) -> str:
    """A table float (booktabs; \\usepackage{booktabs}) written by pandas' Styler, which
    escapes %, _, & and the like outside $...$; the notes below it."""
    tabular = (frame.style.hide(axis="index").format(escape="latex-math").format_index(escape="latex-math", axis=1)
               .to_latex(hrules=True, column_format="l" * len(frame.columns)))
    notes_tex = "\n".join(f"\\item {note}" for note in notes)
    return (
        f"% rine: Tables 1/6 (scripts/make_tables.py). Needs \\usepackage{{booktabs}}.\n"
        "\\begin{table}[t]\n\\centering\n\\small\n\\setlength{\\tabcolsep}{4pt}\n"
        f"\\caption{{{caption}}}\n\\label{{tab:{label}}}\n{tabular}"
        "\\begin{minipage}{\\linewidth}\\footnotesize\n\\begin{itemize}\\setlength{\\itemsep}{0pt}\n"
        f"{notes_tex}\n\\end{{itemize}}\n\\end{{minipage}}\n\\end{{table}}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "outputs"), help="folder searched for results.json (default outputs/)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "paper" / "figures"), help="where the tables go")
    args = parser.parse_args()

    try:  # every check before anything is written
        out = check_out_dir(args.out)
        runs, problems = load_results(args.runs)
        sweeps = {name: experiment_points(experiment) for name, experiment in TABLES.items()}
    except RineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)

    averaged, rejections = {}, {}
    for name, experiment in TABLES.items():
        averaged[name], rejected = match_experiment(runs, experiment, sweeps[name])
        for rejection in rejected:
            rejections.setdefault(rejection.run_dir, []).append(rejection)
        print(f"Table {name[5:]} (experiment={experiment}): {len(averaged[name])} run(s) averaged")
    used = {run_dir for frame in averaged.values() for run_dir in frame.get("run_dir", [])}
    # A run in neither table: the reason against the experiment it comes closest to.
    left_out = problems + [(run_dir, min(found, key=lambda r: r.differences).reason)
                           for run_dir, found in rejections.items() if run_dir not in used]
    for run_dir, reason in sorted(left_out):
        print(f"  not averaged: {run_dir}: {reason}")

    tables = {name: sweep_of(points) for name, points in sweeps.items()}
    exact = {task: exact_columns(task) for tasks, _ in tables.values() for task in tasks}
    out.mkdir(parents=True, exist_ok=True)
    extra = [(f"{len(left_out)} run(s) under the runs folder were not averaged (other settings, copies, "
              "failed, unfinished or invalid runs); make_tables.py lists each with the reason.",
              f"{len(left_out)} run(s) under the runs folder were not averaged (other settings, copies, "
              r"failed, unfinished or invalid runs); \texttt{make\_tables.py} lists each with the reason.")] if left_out else []
    for name, (tasks, betas) in tables.items():
        last = sweeps[name][0].get("report.last_epochs")
        counts = disagreement_counts(averaged[name], tasks, betas)
        flags = [(disagreement_note(counts), disagreement_note(counts, tex=True))] if any(k for _, k, _ in counts) else []
        usable = [USABLE_NOTE] if any(no_agreement_asked(b) for b in betas) else []
        notes = [(FOOTNOTES[0][0].format(n=last), FOOTNOTES[0][1].format(n=last)), *flags, *usable, *FOOTNOTES[1:],
                 *extra]
        display, numbers = build_table(averaged[name], tasks, betas, exact)
        at = ", ".join(f"{b:g}" for b in betas)
        title = f"Table {name[5:]}: redundancy on the canonical tasks (bits), β = {at}"
        caption = f"Redundancy on the canonical tasks (bits), $\\beta = {at}$"
        latex = latex_frame(averaged[name], tasks, betas, exact)
        write_text_atomic(out / f"{name}.md", to_markdown(display, title, [md for md, _ in notes]))
        write_text_atomic(out / f"{name}.tex", to_latex(latex, caption, name, [tex for _, tex in notes]))
        write_text_atomic(out / f"{name}.csv", numbers.to_csv(index=False))
        print(f"\n{to_markdown(display, title, [md for md, _ in flags + usable])}-> {out / name}.{{md,tex,csv}}")


if __name__ == "__main__":
    main()
