"""Paper Figure 3: annealed vs fixed beta, from logged runs.

    python scripts/plot_figure3.py [--runs DIR] [--out DIR] [--task NAME]

Left: the held-out redundancy per epoch under each schedule (one line per schedule, and
per any other setting that differs between the runs), with the true redundancy when the
task has one. Right: the disagreement between the decoders per epoch: the mean total
variation (`val/disagreement_tv`) when the runs logged it, else the distance term D
(`val/distance`). Lines are means over seeds with a ± 1 std band; the shaded epochs are the
last N whose mean is the reported figure (`report.last_epochs`), and the markers at the
right with error bars are that figure, mean ± 1 std over seeds, as printed on the console.
Reads the runs of `python train.py experiment=figure3` (default outputs/paper/figure3);
works for a canonical task on a CPU and for the CIFAR-10 tasks alike. Writes figure3.png and .pdf.
"""

import argparse
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rine.console import fail  # noqa: E402
from rine.errors import RineError  # noqa: E402
from rine.files import check_out_dir, save_figure_atomic  # noqa: E402
from rine.results import (USABLE_LABEL, describe_settings, disagreeing, disagreement_flag,  # noqa: E402
                          disagreement_note, drop_duplicates, last_epochs, load_curves, load_results,
                          no_agreement_asked, setting_groups)
from rine.stats import format_mean_std, mean_std  # noqa: E402

COLORS = {"annealed": "tab:blue", "fixed": "tab:red"}
# (results.json key, metrics.csv column, axis label) of the disagreement, preferred first.
DISAGREEMENTS = [("disagreement_tv", "val/disagreement_tv", "mean total variation between decoders"),
                 ("distance", "val/distance", "distance term D")]


def disagreement_of(runs, curves) -> tuple[str, str, str]:
    """The disagreement every run logged: total variation when all have it, else D."""
    for key, column, label in DISAGREEMENTS:
        if key in runs and runs[key].notna().all() and column in curves and curves[column].notna().any():
            return key, column, label
    raise RineError("the runs logged no disagreement (val/disagreement_tv or val/distance in csv/metrics.csv)")


def true_redundancy(runs) -> tuple[float, float] | None:
    for reference in runs.get("reference", []):
        if isinstance(reference, dict) and reference.get("true_redundancy"):
            low, high = reference["true_redundancy"]
            return float(low), float(high)
    return None


def draw_panel(ax, curves, chosen, column: str, key: str, color: str, label: str, hollow: bool = False) -> None:
    """Mean ± std over seeds per epoch, and the reported figure (results.json `key`) at the right,
    hollow when some of the runs' decoders still disagree (not a redundancy)."""
    by_epoch = curves.groupby("epoch")[column]
    mean, std = by_epoch.mean(), by_epoch.std().fillna(0)  # one seed: no band
    ax.plot(mean.index, mean.values, color=color, label=label)
    ax.fill_between(mean.index, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    reported, spread, _ = mean_std(chosen[key])
    ax.errorbar([mean.index.max() + 1.5], [reported], yerr=[0 if math.isnan(spread) else spread],
                color=color, marker="D", capsize=3, markersize=4, markerfacecolor="white" if hollow else color)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "outputs" / "paper" / "figure3"))
    parser.add_argument("--out", default=str(ROOT / "outputs" / "paper" / "figures"))
    parser.add_argument("--task", default=None, help="plot this task's runs (default: the only task present)")
    args = parser.parse_args()
    hint = "run: python train.py experiment=figure3"
    try:
        out = check_out_dir(args.out)
        runs, problems = load_results(args.runs)
    except RineError as error:
        fail(f"{error}; {hint}")
    for run_dir, reason in problems:
        print(f"  left out: {run_dir}: {reason}")
    if runs.empty:
        fail(f"no usable runs under {args.runs}; {hint}")
    tasks = sorted(runs["task"].unique())
    task = args.task or tasks[0]
    if task not in tasks:
        fail(f"no runs of task {task} under {args.runs}; found: {', '.join(tasks)}")
    if args.task is None and len(tasks) > 1:
        print(f"several tasks under {args.runs} ({', '.join(tasks)}); plotting {task} (choose with --task)")
    runs, copies = drop_duplicates(runs[runs["task"] == task])
    for run_dir, reason in copies:
        print(f"  left out: {run_dir}: {reason}")
    try:
        curves = load_curves(list(runs["run_dir"]))
        key, column, what = disagreement_of(runs, curves)
    except (OSError, RineError) as error:
        fail(f"{error}")
    windows = {n for n in (last_epochs(run) for run in runs.to_dict("records")) if n}
    n_last = min(windows) if len(windows) == 1 else None
    reduction = f"mean of the last {n_last} epochs" if n_last else "each run's reported figure"
    if len(windows) > 1:
        print(f"note: the runs average different numbers of last epochs ({sorted(windows)}); no window is shaded")

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    palette = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
    print(f"{task}: held-out figures, {reduction}, mean ± std over seeds (n = seeds)")
    counts = []  # (line, runs whose decoders still disagree, runs)
    for named, chosen in setting_groups(runs):
        schedule = chosen["beta_schedule"].iloc[0]
        # The paper's two colours when the schedule is all that differs; else one per line.
        color = COLORS.get(schedule) if set(named) <= {"task", "beta_schedule"} else None
        color = color or next(palette)
        betas = ", ".join(f"{b:g}" for b in sorted(chosen["beta"].unique()))
        extra = describe_settings(named, skip=("task", "beta_schedule", "beta"), legend=True)
        usable = all(no_agreement_asked(b) for b in chosen["beta"])
        hollow = bool(disagreeing(chosen).any())
        label = (f"{schedule} β = {betas}" + (f" ({USABLE_LABEL})" if usable else "") + (f", {extra}" if extra else "")
                 + f" (n={len(chosen)})" + (" †" if hollow else ""))
        counts.append((label.rsplit(" (n=", 1)[0], int(disagreeing(chosen).sum()), len(chosen)))
        mine = curves[curves["run_dir"].isin(chosen["run_dir"])]
        draw_panel(left, mine, chosen, "val/redundancy_bits", "redundancy_bits", color, label, hollow)
        draw_panel(right, mine, chosen, column, key, color, label, hollow)
        print(f"  {label.rsplit(' (n=', 1)[0]}: I∩ = {format_mean_std(chosen['redundancy_bits'], unit='bits')}; "
              f"{what} = {format_mean_std(chosen[key])}{disagreement_flag(chosen)}")

    truth = true_redundancy(runs)
    if truth is not None:
        low, high = truth
        if high - low < 5e-4:
            unit = "bit" if f"{low:.3g}" == "1" else "bits"
            left.axhline(low, color="black", linestyle="--", linewidth=1, label=f"true redundancy ({low:.3g} {unit})")
        else:
            left.axhspan(low, high, color="black", alpha=0.08, label=f"true redundancy [{low:.3g}, {high:.3g}] bits")
    last_epoch = int(curves["epoch"].max())
    for ax in (left, right):
        if n_last:
            ax.axvspan(last_epoch - n_last + 0.5, last_epoch + 0.5, color="grey", alpha=0.12, linewidth=0,
                       label=f"last {n_last} epochs (reported)" if ax is left else None)
        ax.set_xlabel("epoch")
    left.set(ylabel="held-out redundancy (bits)", title=f"{task}: redundancy during training")
    right.set(ylabel=what, title="disagreement between decoders")
    left.legend(fontsize=7, loc="best")
    right.legend(fontsize=7, loc="best")
    caption = (f"Lines: mean over seeds of the held-out value at each epoch; bands: ± 1 std over seeds. "
               f"Markers at the right: the reported figure ({reduction}), mean ± 1 std over seeds, as printed"
               + (f"; shaded: those last {n_last} epochs" if n_last else "")
               + (". Dashed: the true redundancy." if truth and truth[1] - truth[0] < 5e-4 else
                  ". Grey band: the range of accepted redundancy." if truth else ".")
               + (f" Hollow markers, †: {disagreement_note(counts)[2:]}" if any(k for _, k, _ in counts) else ""))
    fig.text(0.01, -0.01, caption, fontsize=7, ha="left", va="top", wrap=True)
    fig.tight_layout()
    written = save_figure_atomic(fig, out / "figure3")
    print("-> " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
