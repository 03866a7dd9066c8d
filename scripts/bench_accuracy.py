"""Benchmark: how close each redundancy estimator gets to a known answer in high dimension.

    python scripts/bench_accuracy.py [--quick] [--out DIR] [--seeds N] [--epochs E]
                                     [--tasks T ...] [--dims D ...] [--ns N ...] [--mnist-n N ...]
                                     [--workers W] [override ...]

Tasks: the four canonical pmfs (unq, and, rdnxor, imperfectrdn) with their source symbols
embedded in R^d (task=embedded), and RDNXOR shown as MNIST digits (task=mnist_embedded, d =
784 pixels). Estimators, every one on the same samples of each (task, d, n, seed):
  RINE      rine at the default config's β, held-out split (results.json redundancy_bits);
  MMI       min_i usable information of rine's β = 0 runs, early-stopped on an inner validation
            split (early_stopping.enabled=true: at β = 0 high-dimensional decoders memorise);
  CVX       k-means on each source's training samples, then dit's BROJA on the empirical pmf
            of (clusters, y) (Liang et al., NeurIPS 2023; rine.baselines.kmeans_broja);
  GC-MMI    min_i I(X_i; Y), hoi's Gaussian-copula estimate on the training split (skipped,
            saying why, when hoi is not installed).
Truth: the pmf's accepted redundancy (results.json reference.true_redundancy: an interval
for AND); |error| is the distance to it. The embedded sources carry the pmf's information
only while the noise leaves the symbols separable (truth_exact; else the pmf's value is an
upper bound, and loss_bound is Fano's bound on what a source can lose), the MNIST ones up to
the digit recognition error (digit_accuracy, and its Fano bound in loss_bound).

All RINE runs go through rine.run.run_many in one call: per (d, n), the tasks x seeds x β
train as one batched computation; the MNIST runs (CNN decoders) train one by one. Run
folders live under --out/runs and the other estimates under --out/estimates: a rerun reuses
every finished result. Writes --out/accuracy.{md,csv} and --out/accuracy.{png,pdf}.
--quick: RDNXOR embedded at d 16 and 256, n = 10,000, plus a small mnist_embedded, one seed.
"""

import time

START = time.perf_counter()  # the printed wall time includes imports and start-up

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rine.errors import RineError  # noqa: E402
from rine.files import check_out_dir, save_figure_atomic, write_json_atomic, write_text_atomic  # noqa: E402

CANONICAL = ("unq", "and", "rdnxor", "imperfectrdn")
MNIST = "mnist_embedded"
MNIST_PMF = "rdnxor"
MNIST_DIM = 28 * 28
FULL = {"tasks": [*CANONICAL, MNIST], "dims": [2, 16, 256, 1024], "ns": [1000, 10000, 50000],
        "mnist_ns": [10000], "seeds": 3}
QUICK = {"tasks": ["rdnxor", MNIST], "dims": [16, 256], "ns": [10000], "mnist_ns": [2000], "seeds": 1}
QUICK_MNIST_EPOCHS = 8  # --quick keeps the CNN runs small: about a minute on one core
MIN_SAMPLES = 50
GRID_KEYS = ("beta", "seed", "mode", "early_stopping", "early_stopping.enabled", "trainer.max_epochs")
ESTIMATORS = ("RINE", "MMI (RINE β=0)", "CVX (k-means + BROJA)", "GC-MMI (hoi)")
COLUMNS = ["task", "d", "n", "truth", "estimator", "mean", "std", "abs_error", "seconds_per_estimate",
           "n_seeds", "truth_low", "truth_high", "truth_exact", "loss_bound", "digit_accuracy", "note"]


class OneLineErrors(argparse.ArgumentParser):
    """argparse with its errors as one `error:` line (exit 2), like train.py's, not usage + error."""

    def error(self, message: str):
        print(f"error: {message}; see --help", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None) -> argparse.Namespace:
    parser = OneLineErrors(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small grid (under 5 minutes on 2 cores)")
    parser.add_argument("--out", default="outputs/bench_accuracy", help="folder of runs, estimates, table, figure")
    parser.add_argument("--seeds", type=int, help="seeds 0..N-1 (default 3; --quick 1)")
    parser.add_argument("--epochs", type=int, help="trainer.max_epochs of every run (default: the configs')")
    parser.add_argument("--tasks", nargs="+", choices=[*CANONICAL, MNIST], help="tasks (default: all; --quick rdnxor mnist_embedded)")
    parser.add_argument("--dims", nargs="+", type=int, help="embedding dimensions d (default 2 16 256 1024)")
    parser.add_argument("--ns", nargs="+", type=int, help="samples n of the embedded tasks (default 1000 10000 50000)")
    parser.add_argument("--mnist-n", nargs="+", type=int, dest="mnist_ns", help="samples n of mnist_embedded")
    parser.add_argument("--workers", type=int, default=2, help="processes training batched groups at once")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. model.batch_size=256")
    args = parser.parse_args(argv)
    grid = QUICK if args.quick else FULL
    for key in ("tasks", "dims", "ns", "mnist_ns", "seeds"):
        if getattr(args, key) is None:
            setattr(args, key, grid[key])
    problem = None
    if args.seeds < 1 or min(args.dims) < 1 or (args.epochs is not None and args.epochs < 1):
        problem = "--seeds, --dims and --epochs must be >= 1"
    elif min(args.ns + args.mnist_ns) < MIN_SAMPLES:
        problem = f"--ns and --mnist-n must be >= {MIN_SAMPLES} (10 held-out samples at the 20% held-out split)"
    # Keys the grid itself sets: an override of one would relabel the table's rows silently.
    for override in args.overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key in GRID_KEYS or key.startswith("task"):
            problem = (f"{override}: the bench sets {key} itself (each point trains at the default β and at β = 0 "
                       "with early stopping); choose the grid with --tasks, --dims, --ns, --seeds and --epochs")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    return args


def grid_points(args) -> list[dict]:
    """One point per (task, d, n, seed): its label, its config overrides and its run folder name."""
    points = []
    for seed in range(args.seeds):
        for task in args.tasks:
            if task == MNIST:
                for n in args.mnist_ns:
                    overrides = [f"task={MNIST}", f"task.pmf={MNIST_PMF}", f"task.n_samples={n}"]
                    if args.quick and args.epochs is None:
                        overrides.append(f"trainer.max_epochs={QUICK_MNIST_EPOCHS}")
                    points.append({"task": f"{MNIST} ({MNIST_PMF})", "d": MNIST_DIM, "n": n, "seed": seed,
                                   "overrides": overrides, "name": f"{MNIST}_{MNIST_PMF}_n{n}_seed{seed}"})
                continue
            for d in args.dims:
                for n in args.ns:
                    points.append({"task": task, "d": d, "n": n, "seed": seed, "name": f"{task}_d{d}_n{n}_seed{seed}",
                                   "overrides": ["task=embedded", f"task.pmf={task}", f"task.dim={d}",
                                                 f"task.n_samples={n}"]})
    return points


def rine_configs(args, points: list[dict]) -> tuple[list, list[Path], list[tuple[int, str]]]:
    """Every RINE run: per point, the default β and β = 0; returns configs, run dirs and (point, kind)."""
    from rine.config import compose_config

    default_beta = compose_config([]).beta
    epochs = [f"trainer.max_epochs={args.epochs}"] if args.epochs else []
    cfgs, dirs, owners = [], [], []
    for i, point in enumerate(points):
        for kind, beta, stopping in (("rine", default_beta, []), ("mmi", 0, ["early_stopping.enabled=true"])):
            cfgs.append(compose_config([*point["overrides"], f"seed={point['seed']}", f"beta={beta}", *epochs,
                                        "report.progress=none", *stopping, *args.overrides]))
            dirs.append(Path(args.out) / "runs" / f"{point['name']}_beta{beta:g}")
            owners.append((i, kind))
    return cfgs, dirs, owners


def estimate_key(point: dict, estimator: str, extra: list[str]) -> str:
    """A file name for one other-estimator result: the point's settings and seed, and what it used."""
    payload = json.dumps({"overrides": point["overrides"], "seed": point["seed"], "estimator": estimator,
                          "extra": extra}, sort_keys=True)
    return f"{point['name']}_{estimator.split()[0]}_{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


def other_estimates(point: dict, cfg, out: Path) -> list[dict]:
    """CVX and GC-MMI on this point's training samples (the same samples RINE trained on, drawn
    with its seed): one row each, value None and a note when the estimator could not give one.
    Results are cached as JSON under out/estimates."""
    from rine import baselines
    from rine.baselines import gaussian_copula_mmi, hoi_available, kmeans_broja
    from rine.config import build

    rows, data = [], None
    # What each estimator's result depends on besides the samples: a change re-estimates.
    settings = {ESTIMATORS[2]: [baselines.K_CANDIDATES, baselines.SILHOUETTE_SAMPLES, baselines.CVX_MAX_CLUSTERS,
                                baselines.BROJA_SOLVERS],
                ESTIMATORS[3]: []}
    (out / "estimates").mkdir(parents=True, exist_ok=True)
    for estimator, fn in ((ESTIMATORS[2], kmeans_broja), (ESTIMATORS[3], gaussian_copula_mmi)):
        path = out / "estimates" / f"{estimate_key(point, estimator, settings[estimator])}.json"
        if path.is_file():
            rows.append(json.loads(path.read_text()))
            continue
        row = {"estimator": estimator, "seed": point["seed"], "value": None, "seconds": None, "note": ""}
        missing = hoi_available() if fn is gaussian_copula_mmi else None
        if missing:
            row["note"] = f"skipped: {missing}"
            rows.append(row)  # not cached: installing hoi makes a rerun compute it
            continue
        if data is None:
            data = build(cfg.task).setup(point["seed"])
        sources = [s.numpy() for s in data.train.sources]
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # KMeans' convergence notes on coinciding points
                row["value"] = fn(sources, data.train.y.numpy())
        except RineError as error:
            row["note"] = str(error)
        row["seconds"] = time.perf_counter() - start
        write_json_atomic(path, row)
        rows.append(row)
    return rows


def truth_of(result: dict) -> dict:
    reference = result.get("reference") or {}
    low, high = reference.get("true_redundancy") or (math.nan, math.nan)
    embedding = reference.get("embedding") or {}
    recognition = reference.get("digit_recognition") or {}
    return {"truth_low": low, "truth_high": high, "truth_exact": embedding.get("reference_is_exact"),
            "digit_accuracy": recognition.get("heldout_accuracy"),
            "loss_bound": max(embedding.get("information_loss_bound_bits") or [0.0])}


def distance_to(value: float, low: float, high: float) -> float:
    if value is None or not math.isfinite(value) or not math.isfinite(low):
        return math.nan
    return max(low - value, value - high, 0.0)


def collect(points: list[dict], results: list[dict], owners: list[tuple[int, str]], others: dict) -> pd.DataFrame:
    """One row per (point, estimator): value, seconds, truth."""
    rows = []
    truths = {}
    for (i, kind), result in zip(owners, results):
        point = points[i]
        truths.setdefault(i, truth_of(result))
        seconds = result.get("wall_seconds", math.nan) / max(1, result.get("batched_with") or 1)
        # rine's own check (results.json `valid`) is kept beside the number, not hidden: the value is
        # what the estimator gives, and the note says rine flagged it (e.g. β = 0 decoders overfitting).
        note = "flagged invalid by rine" if result.get("valid") is False else ""
        if result.get("converged") is False:  # still rising, or (β = 0) memorising: see its convergence_warning
            note = "; ".join(filter(None, [note, "not converged"]))
        if kind == "rine":
            if result.get("constraint_met") is False:
                note = "; ".join(filter(None, [note, "constraint not met"]))
            rows.append({"i": i, "estimator": ESTIMATORS[0], "value": result.get("redundancy_bits"),
                         "seconds": seconds, "note": note})
        else:
            usable = result.get("usable_info_bits") or []
            rows.append({"i": i, "estimator": ESTIMATORS[1], "value": min(usable) if usable else math.nan,
                         "seconds": seconds, "note": note})
    for i, estimates in others.items():
        for e in estimates:
            rows.append({"i": i, "estimator": e["estimator"], "value": e["value"], "seconds": e["seconds"],
                         "note": e["note"]})
    frame = pd.DataFrame(rows)
    for key in ("task", "d", "n", "seed"):
        frame[key] = [points[i][key] for i in frame["i"]]
    for key in ("truth_low", "truth_high", "truth_exact", "digit_accuracy", "loss_bound"):
        frame[key] = [truths[i][key] for i in frame["i"]]
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    frame["seconds"] = pd.to_numeric(frame["seconds"], errors="coerce")
    return frame.drop(columns="i")


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (task, d, n, estimator), |error| of the mean to the truth."""
    rows = []
    order = {name: k for k, name in enumerate(ESTIMATORS)}
    for (task, d, n, estimator), group in frame.groupby(["task", "d", "n", "estimator"], sort=False):
        values = group["value"].dropna()
        low, high = group["truth_low"].iloc[0], group["truth_high"].iloc[0]
        mean = values.mean() if len(values) else math.nan
        exact = group["truth_exact"].iloc[0]
        rows.append({
            "task": task, "d": d, "n": n,
            "truth": f"{low:.3f}" if abs(high - low) < 5e-4 else f"{low:.3f}–{high:.3f}",
            "estimator": estimator, "mean": mean, "std": values.std(ddof=1) if len(values) > 1 else math.nan,
            "abs_error": distance_to(mean, low, high), "seconds_per_estimate": group["seconds"].mean(),
            "n_seeds": len(values), "truth_low": low, "truth_high": high,
            "truth_exact": None if exact is None or (isinstance(exact, float) and math.isnan(exact)) else bool(exact),
            "loss_bound": group["loss_bound"].iloc[0], "digit_accuracy": group["digit_accuracy"].iloc[0],
            "note": "; ".join(sorted({s for s in group["note"] if s})),
        })
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["_order"] = table["estimator"].map(order)
    return table.sort_values(["task", "d", "n", "_order"]).drop(columns="_order").reset_index(drop=True)


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown (numbers to 3 decimals; — for none)."""

    def cell(value, digits=3):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    head = ["task", "d", "n", "truth (bits)", "estimator", "mean", "std", "|error|", "s / estimate", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table.itertuples():
        truth = r.truth + ("" if r.truth_exact is not False else f" (upper bound; Fano: ≤ {r.loss_bound:.2f} lost)")
        if isinstance(r.digit_accuracy, float) and math.isfinite(r.digit_accuracy):
            truth += f", digit acc. {r.digit_accuracy:.3f}"
        lines.append("| " + " | ".join([r.task, str(r.d), str(r.n), truth, r.estimator, cell(r.mean), cell(r.std),
                                        cell(r.abs_error), cell(r.seconds_per_estimate, 1), r.note or ""]) + " |")
    return "\n".join(lines) + "\n"


def draw(table: pd.DataFrame):
    """|error| against d (at the n with most dimensions measured) and against n (at the largest
    d), a line per estimator, each point the mean |error| over the embedded tasks."""
    embedded = table[~table["task"].str.startswith(MNIST)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    if embedded.empty:
        embedded = table
    n_ref = embedded.groupby("n")["d"].nunique().idxmax()
    d_ref = embedded["d"].max()
    for ax, (x, fixed, value) in zip(axes, (("d", "n", n_ref), ("n", "d", d_ref))):
        chosen = embedded[embedded[fixed] == value]
        for estimator in ESTIMATORS:
            line = chosen[chosen["estimator"] == estimator].groupby(x)["abs_error"].mean().dropna()
            if len(line):
                ax.plot(line.index, line.values, marker="o", label=estimator)
        ax.set_xscale("log")
        ticks = sorted(chosen[x].unique())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel(x)
        ax.set_ylabel("|estimate − truth| (bits)")
        ax.set_title(f"{fixed} = {value}, mean over the embedded tasks", fontsize=10)
        ax.axhline(0.05, color="grey", lw=0.8, ls="--")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        out = check_out_dir(args.out)
        from rine.config import check_overrides
        from rine.console import quiet_framework_output

        check_overrides(args.overrides)  # a misspelt key: one line here, not Hydra's page
        from rine.run import run_many

        quiet_framework_output()
        points = grid_points(args)
        cfgs, dirs, owners = rine_configs(args, points)
        from rine.config import validate_config

        for cfg in cfgs:  # a bad setting: one error line, before the bench prints anything
            validate_config(cfg)
        print(f"{len(points)} points x 2 RINE runs (β = {cfgs[0].beta:g} and 0) -> {out}", flush=True)
        start = time.perf_counter()
        results = run_many(cfgs, dirs, workers=args.workers)
        rine_wall = time.perf_counter() - start
        print(f"RINE runs: {rine_wall:.1f} s", flush=True)
        start = time.perf_counter()
        others = {}
        for i, point in enumerate(points):
            others[i] = other_estimates(point, cfgs[2 * i], out)
        other_wall = time.perf_counter() - start
        print(f"other estimators: {other_wall:.1f} s", flush=True)
    except RineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    frame = collect(points, results, owners, others)
    table = summarise(frame)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "accuracy.csv", table.to_csv(index=False))
    text = markdown(table)
    write_text_atomic(out / "accuracy.md", text)
    written = save_figure_atomic(draw(table), out / "accuracy")
    print(text)
    for note in sorted({n for n in table["note"] if n.startswith("skipped")}):
        print(note)
    total = time.perf_counter() - START
    print(f"wall: {total:.1f} s in all (RINE {rine_wall:.1f} s, other estimators {other_wall:.1f} s) -> "
          + ", ".join(map(str, [out / "accuracy.md", out / "accuracy.csv", *written])))


if __name__ == "__main__":
    main()
