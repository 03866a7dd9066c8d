"""The picture every run leaves in its folder: its training curves (curves.png).

Four panels over the epochs, held-out solid and training split dashed: the redundancy I∩
(with the true redundancy of a known distribution, and the reported figure: the mean of the
last report.last_epochs epochs), each source's usable information H(Y) − CE_i (with the
exact I(Xi;Y) when known), the decoders' disagreement (mean total variation, log scale, with
the distance.warn_above threshold) and β_t. Enough to see at a glance whether the run
converged and whether its decoders agree. Drawn by rine.run when a run completes (both
engines), from the same per-epoch history as csv/metrics.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from rine.files import save_figure_atomic

CURVES_FIGURE = "curves.png"
TV_FLOOR = 1e-4  # a total variation of 0 on a log axis


def _verdict(results: dict) -> str:
    if results.get("valid") is False:
        return "INVALID estimate"
    if results.get("constraint_met") is False:
        return "decoders still disagree"
    if results.get("constraint_met") is True:
        return "constraint met"
    return "β = 0: no agreement asked"


def curves_figure(history, results: dict, warn_above: float | None = None, last_epochs: int | None = None):
    """A run's curves as a matplotlib Figure (4 axes: I∩, usable information, disagreement, β_t).

    history: the per-epoch rows (a list of dicts or a DataFrame with csv/metrics.csv's
    columns: epoch, beta, train/ and val/ redundancy_bits, usable_info_bits_x<i>,
    disagreement_tv). results: the run's results.json (task, beta, seed, source_names,
    reference, redundancy_bits, ...). warn_above: the disagreement above which the run is
    warned (distance.warn_above), drawn as a line; last_epochs: how many final epochs the
    reported figure averages (report.last_epochs), drawn over them.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in worker processes
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    curves = pd.DataFrame(history)
    epochs = curves["epoch"]
    reference = results.get("reference") or {}
    n = results.get("n_sources") or sum(c.startswith("val/usable_info_bits_x") for c in curves)
    names = results.get("source_names") or [f"x{i + 1}" for i in range(n)]

    # Fixed margins: an automatic layout would triple the cost of a figure drawn for every run.
    fig = Figure(figsize=(12, 3.2))
    axes = fig.subplots(1, 4)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.15, top=0.8, wspace=0.3)
    ax = axes[0]
    ax.plot(epochs, curves["val/redundancy_bits"], color="tab:blue", label="held-out")
    ax.plot(epochs, curves["train/redundancy_bits"], color="tab:blue", ls="--", lw=1, label="training")
    agreement_asked = results.get("beta") != 0  # β = 0 measures the mean usable information instead
    truth = reference.get("true_redundancy") if agreement_asked else None
    if truth:
        ax.axhspan(truth[0] - 0.005, truth[1] + 0.005, color="tab:green", alpha=0.25, label="true")
    reported = results.get("redundancy_bits")
    if reported is not None:
        tail = epochs.iloc[-max(1, min(last_epochs or 1, len(curves))):]
        ax.plot([tail.iloc[0], tail.iloc[-1]], [reported] * 2, color="black", lw=2, label=f"reported {reported:.3f}")
    ax.set(title="redundancy I∩" if agreement_asked else "I∩ at β = 0 (mean usable info.)", ylabel="bits")
    ax.legend(fontsize=7)

    ax = axes[1]
    for i, (name, color) in enumerate(zip(names, _colors(len(names)))):
        ax.plot(epochs, curves[f"val/usable_info_bits_x{i + 1}"], color=color, label=name)
        ax.plot(epochs, curves[f"train/usable_info_bits_x{i + 1}"], color=color, ls="--", lw=1)
        if reference.get("mi_sources"):
            ax.axhline(reference["mi_sources"][i], color=color, ls=":", lw=1,
                       label="exact I(Xi;Y)" if i == len(names) - 1 else None)
    ax.set(title="usable information", ylabel="bits (H(Y) − CE_i)")
    ax.legend(fontsize=7)

    ax = axes[2]
    ax.plot(epochs, curves["val/disagreement_tv"].clip(lower=TV_FLOOR), color="tab:red", label="held-out")
    ax.plot(epochs, curves["train/disagreement_tv"].clip(lower=TV_FLOOR), color="tab:red", ls="--", lw=1,
            label="training")
    if warn_above and agreement_asked:
        ax.axhline(warn_above, color="gray", ls=":", lw=1, label=f"warn above {warn_above:g}")
    ax.set_yscale("log")
    # Ticks at 1, 2, 5 × 10^k written plainly: matplotlib's labelled minor ticks of a short decade overlap.
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set(title="disagreement (mean TV)")
    ax.legend(fontsize=7)

    ax = axes[3]
    ax.plot(epochs, curves["beta"], color="tab:purple")
    ax.set(title="β_t")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        # An explicit y keeps the title where matplotlib would put it (no ticks above the axes)
        # but skips its automatic placement, which measures every axis: ~40% of a figure's cost.
        ax.set_title(ax.get_title(), y=1.0)
    beta = results.get("beta")
    head = f"{results.get('task', '')}  β = {beta:g}" if isinstance(beta, (int, float)) else str(results.get("task", ""))
    if results.get("seed") is not None:
        head += f"  seed {results['seed']}"
    if reported is not None:
        head += f":  I∩ = {reported:.3f} bits,  {_verdict(results)}"
    fig.suptitle(head, fontsize=10)
    return fig


def draw_curves(history, results: dict, path: str | Path, warn_above: float | None = None,
                last_epochs: int | None = None) -> Path:
    """curves_figure as a PNG at `path` (written atomically; ~0.5 s); returns its path."""
    save_figure_atomic(curves_figure(history, results, warn_above, last_epochs), Path(path).with_suffix(""),
                       suffixes=(".png",), dpi=90, bbox_inches=None)
    return Path(path).with_suffix(".png")


def _colors(n: int) -> list[str]:
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
    return [palette[i % len(palette)] for i in range(n)]


def draw_run_curves(cfg, run_dir: str | Path, results: dict, history=None) -> Path | None:
    """curves.png of a finished run (its config `cfg`; none when report.curves is false), from
    `history` or its csv/metrics.csv. A drawing failure is a warning on stderr, never a failed
    run: its figures are in its files."""
    from rine.rundir import METRICS_CSV

    if not cfg.report.curves:
        return None
    run_dir = Path(run_dir)
    try:
        if history is None:
            history = pd.read_csv(run_dir / METRICS_CSV)
        return draw_curves(history, results, run_dir / CURVES_FIGURE, cfg.distance.warn_above,
                           cfg.report.last_epochs)
    except Exception as error:  # noqa: BLE001
        print(f"warning: {run_dir}: {CURVES_FIGURE} not drawn ({type(error).__name__}: {error})", file=sys.stderr,
              flush=True)
        return None
