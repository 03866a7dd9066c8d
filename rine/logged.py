"""Reading logged runs (results.json + csv/metrics.csv) for tables and figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from rine.run import RESULTS_FILE
from rine.stats import CI_LEVEL, t_interval


def load_results(root: str | Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Every results.json under `root`: complete runs as a frame, and the others as problems.

    A run that failed, is still running (or was killed), or whose file cannot be read is
    listed in the problems as (run dir, reason) and never enters the frame.
    """
    rows, problems = [], []
    for path in sorted(Path(root).rglob(RESULTS_FILE)):
        try:
            results = json.loads(path.read_text())
            if not isinstance(results, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            problems.append((str(path.parent), f"unreadable results.json ({error})"))
            continue
        status = results.get("status")
        if status != "complete":
            reason = results.get("error") or "no result (interrupted or still running)"
            problems.append((str(path.parent), f"{status}: {reason}"))
            continue
        results["run_dir"] = str(path.parent)
        rows.append(results)
    return pd.DataFrame(rows), problems


def load_curves(run_dirs: list[str]) -> pd.DataFrame:
    """The per-epoch CSV logs of these runs, stacked, with a run_dir column."""
    frames = []
    for run_dir in run_dirs:
        log = pd.read_csv(Path(run_dir) / "csv" / "metrics.csv")
        frames.append(log.assign(run_dir=run_dir))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_figure_atomic(fig, path_without_suffix: str | Path) -> list[Path]:
    """The figure as PNG and PDF, each written to a temporary file and renamed."""
    written = []
    Path(path_without_suffix).parent.mkdir(parents=True, exist_ok=True)
    for suffix in (".png", ".pdf"):
        path = Path(path_without_suffix).with_suffix(suffix)
        tmp = path.with_name(f".{path.stem}.tmp{suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight")
        os.replace(tmp, path)
        written.append(path)
    return written


def mean_std(values) -> tuple[float, float, int]:
    values = pd.Series(values, dtype=float).dropna()
    n = len(values)
    std = float(values.std(ddof=1)) if n > 1 else float("nan")
    return (float(values.mean()) if n else float("nan")), std, n


def format_mean_std(values, digits: int = 3) -> str:
    """'0.973 ± 0.004 (n=5), 95% CI [0.968, 0.978]' (rine.stats.t_interval); a single run
    shows no spread; none shows '–'."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "–"
    if n == 1:
        return f"{mean:.{digits}f} (n=1)"
    low, high = t_interval(pd.Series(values, dtype=float).dropna())
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n}), {CI_LEVEL:.0%} CI [{low:.{digits}f}, {high:.{digits}f}]"
