"""Paper Figure 1, from logged runs.

    python scripts/plot_figure1.py left  [--runs DIR] [--out DIR] [--task NAME]
    python scripts/plot_figure1.py right [--runs DIR] [--out DIR]

left: held-out redundancy vs crop width, one line per beta, mean ± std over seeds (error
bars). Reads `python train.py experiment=figure1_left` (default outputs/paper/figure1_left),
or the digits runs of `experiment=digits_crop_sweep` with --runs outputs/paper/digits_crop,
or the MNIST runs of `experiment=mnist_crop` with --runs outputs/paper/mnist_crop.
right: a heat map of per-class redundancy (mean over seeds), one row per decomposition
(task), one column per class. Reads `experiment=figure1_right` (outputs/paper/figure1_right).
Writes figure1_left.{png,pdf} or figure1_right.{png,pdf} and prints the values it drew.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rine.logged import load_results, save_figure_atomic  # noqa: E402

EXPERIMENTS = {"left": "figure1_left", "right": "figure1_right"}
ROW_LABELS = {"cifar_channels": "channels (R vs B)", "cifar_crop": "crops", "cifar_freq": "frequencies (low vs high)"}


def draw_left(runs, task_label: str):
    fig, ax = plt.subplots(figsize=(5, 3.8))
    lines = []
    for beta, chosen in sorted(runs.groupby("beta"), key=lambda item: item[0]):
        stats = chosen.groupby("width")["redundancy_bits"].agg(["mean", "std", "count"]).sort_index()
        std = stats["std"].fillna(0.0)  # one seed: no error bar
        ax.errorbar(stats.index, stats["mean"], yerr=std, marker="o", capsize=3, label=f"β = {beta:g}")
        for width, row in stats.iterrows():
            lines.append(f"  beta={beta:g} width={width:g}: {row['mean']:.3f} ± {std[width]:.3f} bits (n={row['count']:g})")
    ax.set(xlabel="crop width (columns per view)", ylabel="redundant information (bits)",
           title=f"{task_label}: redundancy vs crop overlap")
    ax.legend()
    fig.tight_layout()
    return fig, lines


def draw_right(runs):
    rows, labels, lines = [], [], []
    class_names = None
    for task, chosen in sorted(runs.groupby("task"), key=lambda item: item[0]):
        per_class = np.array([[np.nan if v is None else v for v in values]
                              for values in chosen["per_class_redundancy_bits"]], dtype=float)
        mean = np.nanmean(per_class, axis=0) if np.isfinite(per_class).any() else per_class[0]
        rows.append(mean)
        label = ROW_LABELS.get(task, task)
        if task == "cifar_crop" and chosen["width"].nunique() == 1:
            label = f"crops (width {chosen['width'].iloc[0]:g})"
        labels.append(f"{label} (n={len(chosen)})")
        class_names = class_names or chosen["class_names"].iloc[0]
        lines.append(f"  {label}: " + ", ".join(f"{c}={v:.2f}" for c, v in zip(class_names, mean)))
    grid = np.array(rows)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * grid.shape[1], 1.2 + 0.6 * len(rows)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        text = "–" if not np.isfinite(value) else f"{value:.2f}"
        ax.text(j, i, text, ha="center", va="center", color="white" if value < np.nanmean(grid) else "black", fontsize=8)
    ax.set_xticks(range(grid.shape[1]), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), labels)
    fig.colorbar(image, ax=ax, label="redundant information (bits)")
    ax.set_title("per-class redundancy, β = " + ", ".join(f"{b:g}" for b in sorted(runs["beta"].unique())))
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

    runs, problems = load_results(runs_dir)
    for run_dir, reason in problems:
        print(f"  left out: {run_dir}: {reason}")
    if runs.empty:
        sys.exit(f"error: no complete runs under {runs_dir}; run: python train.py experiment={experiment}")

    if args.panel == "left":
        runs = runs[runs["width"].notna()]
        tasks = sorted(runs["task"].unique())
        if not tasks:
            sys.exit(f"error: no crop runs (with a width) under {runs_dir}; run: python train.py experiment={experiment}")
        task = args.task or tasks[0]
        if args.task is None and len(tasks) > 1:
            print(f"several tasks under {runs_dir} ({', '.join(tasks)}); plotting {task} (choose with --task)")
        fig, lines = draw_left(runs[runs["task"] == task], task)
    else:
        runs = runs[runs["per_class_redundancy_bits"].notna()]
        if runs.empty:
            sys.exit(f"error: no runs with per-class results under {runs_dir}; run: python train.py experiment={experiment}")
        fig, lines = draw_right(runs)
    print("\n".join(lines))
    written = save_figure_atomic(fig, Path(args.out) / experiment)
    print("-> " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
