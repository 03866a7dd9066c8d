"""mode=pid: the partial information decomposition from RINE runs (paper App. C.1).

Besides the redundancy run (the configured β, all sources), the same trainer runs at β = 0
on each source alone (its usable information I(Xi;Y)) and once on all sources concatenated
into one input (the joint usable information I(X1..Xn;Y)). For two sources:

    UI_i = I(Xi;Y) − I∩,    SI = I(X1,X2;Y) − UI_1 − UI_2 − I∩.

For n > 2 sources the decomposition has many more atoms than these quantities determine,
so only the redundancy, the joint and each source's usable information are reported
(`unique` and `synergy` are null).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from rine.data import Split
from rine.training import fit

PID_FIGURE = "pid.png"
N_GT_2_NOTE = (
    "n > 2 sources: unique and synergy are not determined by these quantities "
    "(the n-source lattice has more atoms); redundancy, joint and usable are reported"
)


class SourceSubset:
    """Another task's data with only some of its sources, or all of them as one input."""

    def __init__(self, task, select: list[int] | None = None):
        self.task = task
        self.select = select  # None: all sources flattened and concatenated
        self.name = task.name
        self.source_files = getattr(task, "source_files", [])

    def _select(self, split: Split) -> Split:
        if self.select is None:
            return Split([torch.cat([s.flatten(1) for s in split.sources], dim=1)], split.y)
        return Split([split.sources[i] for i in self.select], split.y)

    def setup(self, seed: int):
        # The same seed gives the same samples and split as the redundancy run.
        data = self.task.setup(seed)
        names = data.source_names
        if names is not None:
            names = [names[i] for i in self.select] if self.select is not None else [" + ".join(names)]
        reference = data.reference
        if reference and reference.get("mi_sources"):
            # What bounds this training's sources: each selected I(Xi;Y), or for all sources as one
            # input I(X1..Xn;Y) (the per-source values would flag a correct joint figure).
            mi = [reference["mi_sources"][i] for i in self.select] if self.select is not None else [reference["mi_joint"]]
            reference = {"h_y": reference.get("h_y"), "mi_sources": mi}
        return dataclasses.replace(data, train=self._select(data.train), heldout=self._select(data.heldout),
                                   source_names=names, reference=reference)


CONTINUOUS_NOTE = (
    "RINE's I∩ is the part of the information all decoders can agree on deterministically, a "
    "Gács–Körner-like common part (paper Prop. 1), which is near 0 for noisy copies of a variable "
    "even when each source alone is informative; atoms derived from it then come out negative. Read I∩ "
    "as that common part (at most I_MMI, BROJA, ...), not as those measures' redundancy "
    "(README \"What the redundancy means\")"
)


def atoms(redundancy: float, usable: list[float], joint: float) -> dict:
    """The PID atoms from I∩, each I(Xi;Y) and I(X1..Xn;Y); unique/synergy only for n = 2."""
    out = {"redundancy": redundancy, "unique": None, "synergy": None, "joint": joint, "usable": list(usable)}
    if len(usable) == 2:
        unique = [u - redundancy for u in usable]
        out["unique"] = unique
        out["synergy"] = joint - sum(unique) - redundancy
    return out


def atom_errors(redundancy_se: float, usable_se: list[float], joint_se: float) -> dict:
    """Standard errors of the atoms (bits), adding the variances of the held-out means they combine.

    The runs share the held-out samples, so their errors are positively correlated and these
    sums over-state the error of a difference: a conservative yardstick for "negative beyond noise".
    """
    out = {"redundancy": redundancy_se, "unique": None, "synergy": None, "joint": joint_se, "usable": list(usable_se)}
    if len(usable_se) == 2:
        out["unique"] = [math.hypot(u, redundancy_se) for u in usable_se]
        out["synergy"] = math.sqrt(joint_se**2 + sum(u**2 for u in usable_se) + redundancy_se**2)
    return out


def untrusted_atoms(pid: dict, errors: dict, floor_bits: float) -> list[str]:
    """One warning per atom negative beyond its noise: below −max(floor_bits, 3 standard errors)."""
    named = [("redundancy", pid["redundancy"], errors["redundancy"])]
    if pid["unique"] is not None:
        named += [(f"unique x{i + 1}", u, e) for i, (u, e) in enumerate(zip(pid["unique"], errors["unique"]))]
        named.append(("synergy", pid["synergy"], errors["synergy"]))
    negative = []
    for name, value, se in named:
        tolerance = max(floor_bits, 3 * se)
        if value < -tolerance:
            negative.append(f"{name} = {value:.3f} bits")
    if not negative:
        return []
    return [f"PID atom(s) negative beyond their noise ({', '.join(negative)}): {CONTINUOUS_NOTE}"]


def exact_atoms(reference: dict | None) -> dict | None:
    """The same atoms from a known distribution, when its true redundancy is a point value."""
    truth = (reference or {}).get("true_redundancy")
    if not truth or abs(truth[1] - truth[0]) > 1e-9:
        return None
    return atoms(truth[0], reference["mi_sources"], reference["mi_joint"])


def train_pid(cfg: DictConfig, task, run_dir: Path) -> dict:
    """Train the redundancy run in run_dir and the β = 0 runs under run_dir/pid/; returns the
    redundancy run's outcome with `pid` (the atoms, their standard errors and warnings) added.

    Every number comes from the same trainer (rine.training.fit) and reduction (mean of the
    last `report.last_epochs` held-out epochs; with early_stopping.enabled, the β = 0 trainings'
    figures are read at their best epochs on an inner validation split: rine.outcome.early_stopped).
    """
    def show(what: str) -> None:  # which training runs (report.progress=none: quiet)
        if cfg.report.progress != "none":
            print(f"mode=pid: training {what}", file=sys.stderr, flush=True)

    show(f"the redundancy (all sources, β = {cfg.beta:g})")
    # Early stopping applies to the β = 0 trainings; a β > 0 I∩ is read when the agreement schedule ends.
    outcome = fit(cfg if cfg.beta == 0 else OmegaConf.merge(cfg, {"early_stopping": {"enabled": False}}), task, run_dir)
    n = outcome["n_sources"]
    usable_cfg = OmegaConf.merge(cfg, {"beta": 0})
    runs = {f"usable_x{i + 1}": SourceSubset(task, [i]) for i in range(n)}
    runs["joint"] = SourceSubset(task, None)
    trained = {}
    for k, (name, subset) in enumerate(runs.items(), start=2):
        what = "the joint usable information (all sources as one)" if name == "joint" else \
            f"the usable information of {name.split('_')[1]} alone"
        show(f"{k}/{n + 2}: {what}, β = 0")
        trained[name] = fit(usable_cfg, subset, run_dir / "pid" / name)
    bits = {name: r["redundancy_bits"] for name, r in trained.items()}
    errors = {name: r.get("redundancy_se_bits") or 0.0 for name, r in trained.items()}
    usable_names = [f"usable_x{i + 1}" for i in range(n)]
    pid = atoms(outcome["redundancy_bits"], [bits[u] for u in usable_names], bits["joint"])
    se = atom_errors(outcome.get("redundancy_se_bits") or 0.0, [errors[u] for u in usable_names], errors["joint"])
    floor = cfg.report.bounds_tolerance_bits
    # What a β = 0 training says of itself (memorising, invalid, still rising) explains its atoms
    # first: a unique or synergy atom is its usable information less I∩.
    trainings = []
    for name, r in trained.items():
        for text in (*(r.get("invalid_reasons") or []), r.get("convergence_warning")):
            if text:
                alone = "all sources as one input" if name == "joint" else f"{name.split('_')[1]} alone"
                trainings.append(f"the β = 0 training of {alone} (pid/{name}; its one input is called x1 there): {text}")
    pid.update(
        se=se,
        disagreement_tv=outcome["disagreement_tv"],
        exact=exact_atoms(outcome.get("reference")),
        note=None if n == 2 else N_GT_2_NOTE,
        warnings=trainings + untrusted_atoms(pid, se, floor),
        figure=PID_FIGURE,
        runs={name: f"pid/{name}" for name in runs},
    )
    if cfg.early_stopping.enabled:
        pid["early_stopping_epochs"] = {name: r.get("early_stopping_epochs") for name, r in trained.items()}
    # I∩ <= min_i I(Xi;Y), with each I(Xi;Y) measured alone at β = 0.
    weakest = min(usable_names, key=lambda u: bits[u])
    tolerance = max(floor, 3 * math.hypot(se["redundancy"], errors[weakest]))
    reasons = list(outcome.get("invalid_reasons") or [])
    # (against 0 at least: a usable information estimated below 0 is noise around a true value >= 0)
    if pid["redundancy"] > max(bits[weakest], 0.0) + tolerance:
        reasons.append(f"I∩ = {pid['redundancy']:.3g} bits exceeds I({weakest.split('_')[1].upper()};Y) = "
                       f"{bits[weakest]:.3g} (its source alone, β = 0) by more than {tolerance:.3g}")
    draw_pid(pid, run_dir / PID_FIGURE, title=f"{task.name}  β={cfg.beta:g}")
    return {**outcome, "pid": pid, "valid": not reasons, "invalid_reasons": reasons}


def _segments(pid: dict) -> list[tuple[str, float]]:
    if pid["unique"] is not None:
        return [("redundancy", pid["redundancy"]), ("unique x1", pid["unique"][0]),
                ("unique x2", pid["unique"][1]), ("synergy", pid["synergy"])]
    return [("redundancy", pid["redundancy"]), ("joint − redundancy", pid["joint"] - pid["redundancy"])]


def draw_pid(pid: dict, path: Path, title: str) -> None:
    """A stacked bar of the atoms (and of the exact ones beside it, when known), as PNG.

    Estimated atoms can be slightly negative (estimation noise); a bar cannot stack a
    negative segment, so it is drawn as 0 and its value is printed on the bar.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe in notebooks

    bars = [("RINE", pid)] + ([("exact", pid["exact"])] if pid.get("exact") else [])
    colors = ["#4c72b0", "#55a868", "#8172b2", "#c44e52"]
    fig = Figure(figsize=(2.2 + 1.4 * len(bars), 4))
    ax = fig.add_subplot()
    for x, (label, values) in enumerate(bars):
        bottom = 0.0
        for k, (name, value) in enumerate(_segments(values)):
            height = max(value, 0.0)
            ax.bar(x, height, bottom=bottom, color=colors[k], width=0.6, label=name if x == 0 else None)
            if height > 0.08 or value < -0.005:
                ax.text(x, bottom + height / 2, f"{value:.2f}", ha="center", va="center", fontsize=8)
            bottom += height
        ax.plot([x - 0.35, x + 0.35], [values["joint"]] * 2, color="black", lw=1)
    ax.set_xticks(range(len(bars)), [b[0] for b in bars])
    ax.set_ylabel("bits")
    ax.set_title(f"{title}\n(black line: joint I(X;Y))", fontsize=9)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(path)


def format_pid(pid: dict) -> str:
    """One line of atoms in bits, with the exact ones when known."""

    def show(p: dict) -> str:
        parts = [f"redundancy {p['redundancy']:.2f}"]
        if p["unique"] is not None:
            parts += [f"unique {', '.join(f'{u:.2f}' for u in p['unique'])}", f"synergy {p['synergy']:.2f}"]
        return "  ".join(parts + [f"joint {p['joint']:.2f}", f"usable {', '.join(f'{u:.2f}' for u in p['usable'])}"])

    line = f"PID (bits): {show(pid)}"
    if pid.get("exact"):
        line += f"  | exact: {show(pid['exact'])}"
    return line
