"""The picture every run leaves in its folder: its training curves (curves.png).

Four panels over the epochs, held-out solid and training split dashed: the redundancy I∩
(with the true redundancy of a known distribution, and the reported figure: the mean of the
last report.last_epochs epochs, or with early stopping the chosen epochs), each source's usable
information H(Y) − CE_i (with the exact I(Xi;Y) when known, and a dot where early stopping
reads it), the decoders' disagreement (mean total variation, log scale, with
the distance.warn_above threshold) and β per epoch. Enough to see at a glance whether the run
converged and whether its decoders agree. Drawn by rine.run when a run completes (both
engines), from the same per-epoch history as csv/metrics.csv.
"""

from __future__ import annotations

import sys
from pathlib import Path

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
    """A run's curves as a new matplotlib Figure (4 axes: I∩, usable information, disagreement, β per epoch).

    history: the per-epoch rows (a list of dicts or a DataFrame with csv/metrics.csv's
    columns: epoch, beta, train/ and val/ redundancy_bits, usable_info_bits_x<i>,
    disagreement_tv). results: the run's results.json (task, beta, seed, source_names,
    reference, redundancy_bits, ...). warn_above: the disagreement above which the run is
    warned (distance.warn_above), drawn as a line; last_epochs: how many final epochs the
    reported figure averages (report.last_epochs), drawn over them.
    """
    return _plot_run(_empty_figure(), history, results, warn_above, last_epochs)


# One figure per process, redrawn for every run: creating a figure's ~80 ticks costs more
# than drawing them, and a sweep draws one figure per run.
_REUSABLE: dict[str, object] = {}


def draw_curves(history, results: dict, path: str | Path, warn_above: float | None = None,
                last_epochs: int | None = None) -> Path:
    """curves_figure as a PNG at `path` (written atomically; ~0.1 s); returns its path."""
    if "figure" not in _REUSABLE:
        _REUSABLE["figure"] = _empty_figure()
    fig = _plot_run(_REUSABLE["figure"], history, results, warn_above, last_epochs)
    save_figure_atomic(fig, Path(path).with_suffix(""), suffixes=(".png",), dpi=90, bbox_inches=None)
    return Path(path).with_suffix(".png")


def _empty_figure():
    """The four axes with everything that does not depend on the run."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in worker processes
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator

    # Fixed margins: an automatic layout would triple the cost of a figure drawn for every run.
    fig = Figure(figsize=(12, 3.2))
    axes = fig.subplots(1, 4)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.15, top=0.8, wspace=0.3)
    axes[1].set_ylabel("bits")  # H(Y) − CE_i (a longer label meets negative tick labels)
    axes[0].set_ylabel("bits")
    axes[1].set_title("usable information", y=1.0)
    axes[2].set_title("disagreement (mean TV)", y=1.0)
    axes[3].set_title("β (agreement weight)", y=1.0)
    ax = axes[2]
    ax.set_yscale("log")
    # Ticks at 1, 2, 5 × 10^k written plainly: matplotlib's labelled minor ticks of a short decade overlap.
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(NullLocator())
    # Few ticks and one x label: every tick label is laid out twice per drawing, which is most
    # of a figure's cost in a sweep that draws one per run.
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(4, integer=True, steps=[1, 2, 5, 10]))
        if ax is not axes[2]:
            ax.yaxis.set_major_locator(MaxNLocator(6))
        ax.grid(alpha=0.3)
    fig.supxlabel("epoch", y=0.02, fontsize=10)
    return fig


def _plot_run(fig, history, results: dict, warn_above: float | None, last_epochs: int | None):
    """Draw one run's curves on `fig` (from _empty_figure), replacing any run drawn there before."""
    axes = fig.axes
    for ax in axes:
        for artist in [*ax.lines, *ax.patches, *ax.collections, *ax.texts]:
            artist.remove()
        if ax.get_legend() is not None:
            ax.get_legend().remove()

    curves = _columns(history)
    epochs = curves["epoch"]
    reference = results.get("reference") or {}
    n = results.get("n_sources") or sum(c.startswith("val/usable_info_bits_x") for c in curves)
    names = results.get("source_names") or [f"x{i + 1}" for i in range(n)]

    ax = axes[0]
    ax.plot(epochs, curves["val/redundancy_bits"], color="tab:blue", label="held-out")
    ax.plot(epochs, curves["train/redundancy_bits"], color="tab:blue", ls="--", lw=1, label="training")
    agreement_asked = results.get("beta") != 0  # β = 0 measures the mean usable information instead
    truth = reference.get("true_redundancy") if agreement_asked else None
    if truth:
        ax.axhspan(truth[0] - 0.005, truth[1] + 0.005, color="tab:green", alpha=0.25, label="true")
    reported = results.get("redundancy_bits")
    stopped = results.get("early_stopping_epochs")  # read at these epochs, not at the last ones
    if reported is not None:
        tail = epochs[-max(1, min(last_epochs or 1, len(epochs))):] if not stopped else [min(stopped), max(stopped)]
        ax.plot([tail[0], tail[-1]], [reported] * 2, color="black", lw=2, marker="|" if stopped else None,
                label=f"reported {reported:.3f}")
    # An explicit y keeps the title where matplotlib would put it (no ticks above the axes)
    # but skips its automatic placement, which measures every axis: ~40% of a figure's cost.
    ax.set_title("redundancy I∩" if agreement_asked else "I∩ at β = 0 (mean usable info.)", y=1.0)
    ax.legend(fontsize=7)

    ax = axes[1]
    for i, (name, color) in enumerate(zip(names, _colors(len(names)))):
        ax.plot(epochs, curves[f"val/usable_info_bits_x{i + 1}"], color=color, label=name)
        ax.plot(epochs, curves[f"train/usable_info_bits_x{i + 1}"], color=color, ls="--", lw=1)
        if stopped:  # the epoch each decoder is read at (its best on the inner validation split)
            ax.plot([stopped[i]], [results["usable_info_bits"][i]], color=color, marker="o",
                    label="early stopping" if i == len(names) - 1 else None)
        if reference.get("mi_sources"):
            ax.axhline(reference["mi_sources"][i], color=color, ls=":", lw=1,
                       label="exact I(Xi;Y)" if i == len(names) - 1 else None)
    ax.legend(fontsize=7)

    ax = axes[2]
    ax.plot(epochs, curves["val/disagreement_tv"].clip(min=TV_FLOOR), color="tab:red", label="held-out")
    ax.plot(epochs, curves["train/disagreement_tv"].clip(min=TV_FLOOR), color="tab:red", ls="--", lw=1,
            label="training")
    warned = warn_above and agreement_asked
    if warned:
        ax.axhline(warn_above, color="gray", ls=":", lw=1, label=f"warn above {warn_above:g}")
        # Labelled on the line, not in a legend (a legend is the costliest artist of a drawing);
        # solid and dashed as in the I∩ panel's legend.
        ax.text(0.02, warn_above, f"warn above {warn_above:g}", transform=ax.get_yaxis_transform(), fontsize=7,
                color="gray", va="bottom")

    axes[3].plot(epochs, curves["beta"], color="tab:purple")
    for ax in axes:  # limits from this run's artists alone
        ax.relim()
        ax.autoscale_view()
    beta = results.get("beta")
    head = f"{results.get('task', '')}  β = {beta:g}" if isinstance(beta, (int, float)) else str(results.get("task", ""))
    if results.get("seed") is not None:
        head += f"  seed {results['seed']}"
    if reported is not None:
        figure = "I∩" if agreement_asked else "mean usable information"  # as the console names it
        head += f":  {figure} = {reported:.3f} bits,  {_verdict(results)}"
    fig.suptitle(head, fontsize=10)
    return fig


def _columns(history) -> dict:
    """{column: numpy array} of a history given as rows (dicts) or as a DataFrame."""
    import numpy as np

    if hasattr(history, "columns"):  # a DataFrame (read from csv/metrics.csv)
        return {column: history[column].to_numpy() for column in history.columns}
    keys = dict.fromkeys(key for row in history for key in row)
    return {key: np.array([row.get(key, np.nan) for row in history], dtype=float) for key in keys}


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
            import pandas as pd

            history = pd.read_csv(run_dir / METRICS_CSV)
        return draw_curves(history, results, run_dir / CURVES_FIGURE, cfg.distance.warn_above,
                           cfg.report.last_epochs)
    except Exception as error:  # noqa: BLE001
        print(f"warning: {run_dir}: {CURVES_FIGURE} not drawn ({type(error).__name__}: {error})", file=sys.stderr,
              flush=True)
        return None
