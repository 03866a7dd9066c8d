"""Paper Tables 1 and 6 from logged runs, as Markdown, LaTeX and CSV.

    python scripts/make_tables.py [--runs DIR] [--out DIR]

Reads the results.json of every complete run under --runs (default outputs/), keeps the
canonical tasks trained with the annealed schedule, and reports I^V at each beta as
mean ± std over seeds (with n) and a 95% t-interval, beside the exact measures of each distribution: the true
redundancy, I∧ (computed here) and dit's I_GH, BROJA, MMI, I_min and I∩^≺ (from the cache
made by `make reference-values`). Failed, interrupted or unreadable runs are listed and
never averaged in. The paper's printed values stand in columns labelled as the paper's.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from rine.logged import format_mean_std, load_results, mean_std, write_text_atomic  # noqa: E402
from rine.references import DIT_MEASURES, describe, dit_references  # noqa: E402
from rine.run import build, compose_config  # noqa: E402
from rine.stats import t_interval  # noqa: E402

TASKS = {"unq": "UNQ", "and": "AND", "rdnxor": "RDNXOR", "imperfectrdn": "IMPERFECTRDN"}
# Printed in the paper (Tables 1 and 6), I^V at beta = 0, 5, 15.
PAPER = {
    "unq": {0: 0.987, 5: 0.613, 15: 0.011},
    "and": {0: 0.310, 5: -0.001, 15: -0.017},
    "rdnxor": {0: 0.991, 5: 0.988, 15: 0.967},
    "imperfectrdn": {0: 0.989, 5: 0.988, 15: 0.989},
}
MEASURE_LABELS = {"i_gh": "I_GH", "i_broja": "I_BROJA", "i_mmi": "I_MMI", "i_min": "I_min", "i_prec": "I^≺"}
TABLES = {"table1": [15], "table6": [0, 5, 15]}
FOOTNOTES = [
    "I^V: this repo's RINE estimate on the held-out split (mean of the last 5 epochs), mean ± std over seeds "
    "and the 95% Student-t confidence interval of the mean.",
    "I_GH and the other dit measures are dit 2.3's values (PID_GH seeded); the paper's Table 1 prints "
    "I_GH(AND) = 0, dit computes 0.123 bits.",
    "n/a (timeout): dit did not finish within the time budget of `make reference-values`.",
    "True: the accepted redundancy; AND's [0, 0.311] spans I∧ to min_i I(Xi;Y).",
]


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
    for measure, label in MEASURE_LABELS.items():
        row[label] = describe(entries[measure])
    numbers = {"true_low": low, "true_high": high, "i_wedge": reference["i_wedge"]}
    numbers.update({m: entries[m].get("value") for m in DIT_MEASURES})
    return {"display": row, "numbers": numbers}


def build_table(runs: pd.DataFrame, betas: list[int], exact: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    display, numbers = [], []
    for task, label in TASKS.items():
        shown = {"Task": label, **exact[task]["display"]}
        raw = {"task": task, **exact[task]["numbers"]}
        for beta in betas:
            values = runs.loc[(runs["task"] == task) & (runs["beta"] == beta), "redundancy_bits"] if len(runs) else []
            shown[f"I^V β={beta}"] = format_mean_std(values)
            mean, std, n = mean_std(values)
            low, high = t_interval(pd.Series(values, dtype=float).dropna())
            raw.update({f"beta{beta}_mean": mean, f"beta{beta}_std": std, f"beta{beta}_n": n,
                        f"beta{beta}_ci_low": low, f"beta{beta}_ci_high": high})
        shown["Paper I^V (β=" + ", ".join(map(str, betas)) + ")"] = " / ".join(f"{PAPER[task][b]:.3f}" for b in betas)
        raw.update({f"paper_beta{b}": PAPER[task][b] for b in betas})
        display.append(shown)
        numbers.append(raw)
    return pd.DataFrame(display), pd.DataFrame(numbers)


def to_markdown(frame: pd.DataFrame, title: str, notes: list[str]) -> str:
    lines = [f"## {title}", "", "| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def to_latex(frame: pd.DataFrame, title: str) -> str:
    def tex(value) -> str:
        text = str(value).replace("±", r"$\pm$").replace("β", r"$\beta$").replace("∧", r"$\wedge$")
        text = text.replace("^≺", r"$^\prec$").replace("^V", r"$^\mathcal{V}$").replace("_GH", r"$_{GH}$")
        return text.replace("–", "--").replace("_", r"\_").replace(r"$\_{GH}$", r"$_{GH}$")

    header = " & ".join(tex(c) for c in frame.columns)
    body = "\n".join(" & ".join(tex(v) for v in row) + r" \\" for row in frame.itertuples(index=False))
    return (
        f"% {title}\n\\begin{{tabular}}{{l{'c' * (len(frame.columns) - 1)}}}\n\\toprule\n{header} \\\\\n"
        f"\\midrule\n{body}\n\\bottomrule\n\\end{{tabular}}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "outputs"), help="folder searched for results.json (default outputs/)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "paper" / "figures"), help="where the tables go")
    args = parser.parse_args()

    runs, problems = load_results(args.runs)
    if len(runs):
        keep = runs["task"].isin(list(TASKS)) & (runs["beta_schedule"] == "annealed") & (
            runs["distance_normalization"] == "classes"
        )
        runs = runs[keep]
    print(f"{len(runs)} complete canonical runs under {args.runs}")
    for run_dir, reason in problems:
        print(f"  not averaged: {run_dir}: {reason}")

    exact = {task: exact_columns(task) for task in TASKS}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    notes = FOOTNOTES + ([f"{len(problems)} incomplete or failed run(s) under the runs folder were left out."] if problems else [])
    for name, betas in TABLES.items():
        display, numbers = build_table(runs, betas, exact)
        title = f"Table {name[5:]}: redundancy on the canonical tasks (bits)"
        write_text_atomic(out / f"{name}.md", to_markdown(display, title, notes))
        write_text_atomic(out / f"{name}.tex", to_latex(display, title))
        write_text_atomic(out / f"{name}.csv", numbers.to_csv(index=False))
        print(f"\n{to_markdown(display, title, [])}-> {out / name}.{{md,tex,csv}}")


if __name__ == "__main__":
    main()
