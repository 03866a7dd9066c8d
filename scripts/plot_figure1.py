"""Paper Figure 1, from logged runs.

    python scripts/plot_figure1.py left  [--runs DIR] [--out DIR] [--task NAME]
    python scripts/plot_figure1.py right [--runs DIR] [--out DIR]

left: held-out redundancy vs crop width, one line per beta (and per any other setting
that differs between the runs), mean ± std over seeds (error bars). Reads `python train.py
experiment=figure1_left` (default outputs/paper/figure1_left), or the digits runs of
`experiment=digits_crop_sweep` with --runs outputs/paper/digits_crop, or the MNIST
runs of `experiment=mnist_crop` with --runs outputs/paper/mnist_crop.
right: a heat map of per-class redundancy, one row per view (task) and per any other
setting that differs between the runs (e.g. each crop width of a width sweep), one column
per class, each cell the mean over that row's seeds; the colour scale runs from 0 to H(Y),
the most a redundancy can be. Reads `experiment=figure1_right` (outputs/paper/figure1_right).
Writes figure1_left.{png,pdf} or figure1_right.{png,pdf} and prints the values it drew,
with n = the number of seeds averaged.
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
import numpy as np  # noqa: E402

from rine.console import fail  # noqa: E402
from rine.errors import RineError  # noqa: E402
from rine.files import check_out_dir, save_figure_atomic  # noqa: E402
from rine.results import (DISAGREE_MARK, USABLE_LABEL, describe_settings, disagreeing,  # noqa: E402
                          disagreement_flag, disagreement_note, drop_duplicates, load_results,
                          no_agreement_asked, setting_groups)
from rine.stats import format_mean_std, mean_std  # noqa: E402

EXPERIMENTS = {"left": "figure1_left", "right": "figure1_right"}
ROW_LABELS = {"cifar_channels": "channels (R vs B)", "cifar_crop": "crops", "digits_crop": "crops",
              "cifar_freq": "frequencies (low vs high)"}


def repeated_seeds(runs) -> str:
    counts = runs["seed"].value_counts()
    repeated = counts[counts > 1]
    return ", ".join(f"seed {s} x{c}" for s, c in repeated.items())


def usable_label(label: str, chosen) -> str:
    """β = 0 asks no agreement: its line or row is the mean usable information, said so."""
    usable = "beta" in chosen and len(chosen) and all(no_agreement_asked(b) for b in chosen["beta"])
    return f"{label} ({USABLE_LABEL})" if usable else label


def draw_left(runs, task: str):
    fig, ax = plt.subplots(figsize=(5, 3.8))
    lines = ["held-out redundancy (mean of the last epochs), mean ± std over seeds; n = seeds averaged per point"]
    counts = []  # (point, runs whose decoders still disagree, runs)
    for named, chosen in setting_groups(runs, leave_out=("width", "task.width")):
        label = usable_label(describe_settings(named, legend=True) or task, chosen)
        console = describe_settings(named)
        widths = sorted(chosen["width"].unique())
        means, stds, hollow = [], [], []
        for width in widths:
            at = chosen[chosen["width"] == width]
            values = at["redundancy_bits"]
            mean, std, n = mean_std(values)
            means.append(mean)
            stds.append(0.0 if math.isnan(std) else std)  # one seed: no error bar
            hollow.append(bool(disagreeing(at).any()))
            point = " ".join(filter(None, [console, f"width={width:g}"]))
            counts.append((point, int(disagreeing(at).sum()), len(at)))
            lines.append(f"  {point}: {format_mean_std(values, unit='bits', ci=False)}{disagreement_flag(at)}")
            if repeated_seeds(at):
                lines.append(f"    note: repeated runs ({repeated_seeds(at)}) count in n")
        drawn = ax.errorbar(widths, means, yerr=stds, marker="o", capsize=3, label=label)
        # A point averaging runs whose decoders still disagree is not a redundancy: hollow.
        color = drawn.lines[0].get_color()
        ax.plot([w for w, h in zip(widths, hollow) if h], [m for m, h in zip(means, hollow) if h], linestyle="none",
                marker="o", markerfacecolor="white", markeredgecolor=color, zorder=3)
    flagged = any(k for _, k, _ in counts)
    if flagged:
        ax.plot([], [], linestyle="none", marker="o", markerfacecolor="white", markeredgecolor="black",
                label=f"hollow {DISAGREE_MARK}: decoders still disagree")
        lines.append("  " + disagreement_note(counts))
    n_seeds = runs.groupby(["width"])["seed"].nunique()
    ax.set(xlabel="crop width (columns per view)", ylabel="redundant information (bits)",
           title=f"{task}: redundancy vs crop overlap")
    ax.legend()
    seeds = f"{n_seeds.min()}" if n_seeds.min() == n_seeds.max() else f"{n_seeds.min()}–{n_seeds.max()}"
    fig.text(0.01, -0.02, f"Points: mean over {seeds} seed(s) of each run's held-out redundancy; "
             "error bars: ± 1 std over seeds (none for one seed)."
             + (" Hollow: the decoders still disagree (held-out TV > distance.warn_above) in some runs, "
                "so the point is not a redundancy." if flagged else "")
             + (f" β = 0: no agreement asked, the {USABLE_LABEL}." if any(no_agreement_asked(b) for b in runs.get("beta", []))
                else ""), fontsize=7, ha="left", va="top", wrap=True)
    fig.tight_layout()
    return fig, lines


def row_label(task: str, named: dict, chosen) -> str:
    """'crops (width 16)', 'channels (R vs B)', then any other setting that differs ('β = 5')."""
    label = ROW_LABELS.get(task, task)
    if task.endswith("_crop"):
        label = f"{label} (width {chosen['width'].iloc[0]:g})"  # one width per row: width is grouped on
    extra = describe_settings(named, skip=("task", "width"), legend=True)  # only crops use the width
    return f"{label}, {extra}" if extra else label


def draw_right(runs):
    rows, labels = [], []
    lines = ["per-class redundancy, mean over seeds; n = seeds averaged per row"]
    counts = []  # (row, runs whose decoders still disagree, runs)
    class_names = list(runs["class_names"].iloc[0])
    for named, chosen in setting_groups(runs):
        task = chosen["task"].iloc[0]
        per_class = np.array([[np.nan if v is None else v for v in values]
                              for values in chosen["per_class_redundancy_bits"]], dtype=float)
        with np.errstate(all="ignore"):
            # A class absent from every run's held-out split stays NaN (drawn as '–').
            mean = np.array([np.nan if np.isnan(col).all() else np.nanmean(col) for col in per_class.T])
        label = usable_label(row_label(task, named, chosen), chosen)
        k = int(disagreeing(chosen).sum())
        counts.append((label, k, len(chosen)))
        label += f" {DISAGREE_MARK}" if k else ""
        rows.append(mean)
        labels.append(f"{label} (n={len(chosen)})")
        lines.append(f"  {label} (n={len(chosen)}): " + ", ".join(f"{c}={v:.2f}" for c, v in zip(class_names, mean))
                     + disagreement_flag(chosen))
        if repeated_seeds(chosen):
            lines.append(f"    note: repeated runs ({repeated_seeds(chosen)}) count in n")
    grid = np.array(rows)
    # From 0 (or the lowest value, if negative) to H(Y), the most a redundancy can be: a
    # colour range fitted to the data would make differences of a few hundredths look large.
    if "h_y_bits" in runs and runs["h_y_bits"].notna().any():
        top = float(runs["h_y_bits"].max())
    else:
        top = math.log2(len(class_names))
    low = min(0.0, float(np.nanmin(grid))) if np.isfinite(grid).any() else 0.0
    norm = matplotlib.colors.Normalize(vmin=low, vmax=max(top, float(np.nanmax(grid)) if np.isfinite(grid).any() else top))
    fig, ax = plt.subplots(figsize=(1.6 + 0.75 * grid.shape[1], 1.6 + 0.6 * len(rows)))
    image = ax.imshow(grid, cmap="viridis", norm=norm, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        text = "–" if not np.isfinite(value) else f"{value:.2f}"
        dark = not np.isfinite(value) or norm(value) < 0.6
        ax.text(j, i, text, ha="center", va="center", color="white" if dark else "black", fontsize=8)
    ax.set_xticks(range(grid.shape[1]), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels)
    fig.colorbar(image, ax=ax, label=f"redundant information (bits; 0 to H(Y) = {top:.2f})")
    constant_beta = "beta" not in {k for named, _ in setting_groups(runs) for k in named}
    title = "per-class redundancy, mean over n seeds"
    if constant_beta:
        title += ", β = " + ", ".join(f"{b:g}" for b in sorted(runs["beta"].unique()))
    ax.set_title(title)
    note = disagreement_note(counts)
    if note:
        lines.append("  " + note)
        fig.text(0.01, -0.01, note, fontsize=7, ha="left", va="top", wrap=True)
    fig.tight_layout()
    return fig, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("panel", choices=sorted(EXPERIMENTS))
    parser.add_argument("--runs", default=None, help="folder of runs (default outputs/paper/figure1_<panel>)")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "paper" / "figures"))
    parser.add_argument("--task", default=None, help="left: plot this task's runs (default: the only one present)")
    args = parser.parse_args()
    experiment = EXPERIMENTS[args.panel]
    runs_dir = args.runs or str(ROOT / "outputs" / "paper" / experiment)
    hint = f"run: python train.py experiment={experiment}"
    try:
        out = check_out_dir(args.out)
        runs, problems = load_results(runs_dir)
    except RineError as error:
        fail(f"{error}; {hint}")
    runs, copies = drop_duplicates(runs)
    for run_dir, reason in problems + copies:
        print(f"  left out: {run_dir}: {reason}")
    if runs.empty:
        fail(f"no usable runs under {runs_dir}; {hint}")

    if args.panel == "left":
        runs = runs[runs["width"].notna()] if "width" in runs else runs.iloc[0:0]
        tasks = sorted(runs["task"].unique()) if len(runs) else []
        if not tasks:
            fail(f"no crop runs (with a width) under {runs_dir}; {hint}")
        task = args.task or tasks[0]
        if task not in tasks:
            fail(f"no runs of task {task} under {runs_dir}; found: {', '.join(tasks)}")
        if args.task is None and len(tasks) > 1:
            print(f"several tasks under {runs_dir} ({', '.join(tasks)}); plotting {task} (choose with --task)")
        fig, lines = draw_left(runs[runs["task"] == task], task)
    else:
        runs = runs[runs["per_class_redundancy_bits"].notna()] if "per_class_redundancy_bits" in runs else runs.iloc[0:0]
        if runs.empty:
            fail(f"no runs with per-class results under {runs_dir}; {hint}")
        fig, lines = draw_right(runs)
    print("\n".join(lines))
    written = save_figure_atomic(fig, out / experiment)
    print("-> " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
