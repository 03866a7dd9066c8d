"""Paper Figure 3: annealed vs fixed beta, from logged runs.

    python scripts/plot_figure3.py [--runs DIR] [--out DIR] [--task NAME]

Left: the held-out redundancy per epoch under each schedule (mean ± std over seeds).
Right: the final held-out distance term D of each schedule. Reads the runs of
`python train.py experiment=figure3` (default outputs/paper/figure3); works for a
canonical task on a CPU and for the CIFAR-10 tasks alike. Writes figure3.png and .pdf.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rine.logged import load_curves, load_results, save_figure_atomic  # noqa: E402

SCHEDULES = {"annealed": ("annealed β", "tab:blue"), "fixed": ("fixed β", "tab:red")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(ROOT / "outputs" / "paper" / "figure3"))
    parser.add_argument("--out", default=str(ROOT / "outputs" / "paper" / "figures"))
    parser.add_argument("--task", default=None, help="plot this task's runs (default: the only task present)")
    args = parser.parse_args()

    runs, problems = load_results(args.runs)
    for run_dir, reason in problems:
        print(f"  left out: {run_dir}: {reason}")
    if runs.empty:
        sys.exit(f"error: no complete runs under {args.runs}; run: python train.py experiment=figure3")
    tasks = sorted(runs["task"].unique())
    task = args.task or tasks[0]
    if args.task is None and len(tasks) > 1:
        print(f"several tasks under {args.runs} ({', '.join(tasks)}); plotting {task} (choose with --task)")
    runs = runs[runs["task"] == task]

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    finals, labels, colors = [], [], []
    for schedule, (label, color) in SCHEDULES.items():
        chosen = runs[runs["beta_schedule"] == schedule]
        if chosen.empty:
            continue
        curves = load_curves(list(chosen["run_dir"]))
        by_epoch = curves.groupby("epoch")["val/redundancy_bits"]
        mean, std = by_epoch.mean(), by_epoch.std().fillna(0)
        betas = ", ".join(f"{b:g}" for b in sorted(chosen["beta"].unique()))
        left.plot(mean.index, mean.values, color=color, label=f"{label} = {betas} (n={len(chosen)})")
        left.fill_between(mean.index, mean - std, mean + std, color=color, alpha=0.2)
        finals.append(chosen["distance_final"].to_numpy())
        labels.append(label)
        colors.append(color)
    left.set(xlabel="epoch", ylabel="held-out redundancy (bits)", title=f"{task}: redundancy during training")
    left.legend()
    positions = range(len(finals))
    right.bar(positions, [f.mean() for f in finals], yerr=[f.std() if len(f) > 1 else 0 for f in finals],
              color=colors, capsize=4)
    right.set_xticks(list(positions), labels)
    right.set(ylabel="final distance D", title="agreement term at the end")
    fig.tight_layout()
    written = save_figure_atomic(fig, Path(args.out) / "figure3")
    print("-> " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
