"""Benchmark: the paper's Table 6 grid (4 canonical tasks x beta 0, 5, 15 x seeds) on the CPU.

    python scripts/bench_canonical.py [--seeds N] [--jobs J] [--batched-only | --one-by-one] [override ...]

First the whole grid trains through rine.run.run_many (what `python train.py -m` /
`experiment=table6` runs: runs that can share a computation train as one), timed end to end
from this process's start; then one default `python train.py` run in a fresh process (cold:
imports included), and the ratio of the two; then the same runs one by one through
rine.run.run, the code train.py calls, and that ratio. --batched-only and --one-by-one time
one path (--batched-only still times the train.py run). Prints each estimate
beside the exact value and the wall seconds. Runs go to outputs/bench/<time>/. Each
worker process uses one thread: the MLPs are far too small for intra-op parallelism to
pay, so the cores are better spent on separate tasks or runs.
"""

import time

START = time.perf_counter()  # total wall time includes imports and process start-up

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from datetime import datetime  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Table 6 is the paper's setting (configs/experiment/table6.yaml pins the same); overrides come after.
PAPER_SETTING = ["objective=paper", "model=mlp_paper"]
TASKS = ("unq", "and", "rdnxor", "imperfectrdn")
BETAS = (0, 5, 15)


def quiet() -> None:
    import torch

    from rine.console import quiet_framework_output

    torch.set_num_threads(1)
    quiet_framework_output()


def train_one(args: tuple[str, int, int, list[str], str]) -> dict:
    task, beta, seed, overrides, out_dir = args
    quiet()
    from rine.config import compose_config
    from rine.run import run

    cfg = compose_config([f"task={task}", f"beta={beta}", f"seed={seed}", *PAPER_SETTING, *overrides])
    return run(cfg, Path(out_dir) / f"{task}_beta{beta}_seed{seed}")


def grid_configs(points: list[tuple[int, int]], overrides: list[str]) -> list:
    """The grid's configs, composed once per task and copied per (β, seed): a Hydra compose
    costs ~0.3 s, which 60 of them would spend before any training. Checked against a full
    compose of one point, so the copies are the configs train.py would see."""
    from rine.config import compose_config

    cfgs = []
    for task in TASKS:
        base = compose_config([f"task={task}", *PAPER_SETTING, *overrides])
        for beta, seed in points:
            cfg = base.copy()
            cfg.beta, cfg.seed = beta, seed
            cfgs.append(cfg)
    task, (beta, seed) = TASKS[-1], points[-1]
    assert cfgs[-1] == compose_config([f"task={task}", f"beta={beta}", f"seed={seed}", *PAPER_SETTING, *overrides])
    return cfgs


def cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the workers, train.py). On a shared
    machine wall times grow with the others' load; CPU seconds much less so."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def time_train_py() -> tuple[float, float]:
    """Wall and CPU seconds of one default `python train.py` run in a fresh process (imports included)."""
    with tempfile.TemporaryDirectory() as run_dir:
        start, cpu = time.perf_counter(), cpu_seconds()
        subprocess.run([sys.executable, str(ROOT / "train.py"), "task=rdnxor", f"hydra.run.dir={run_dir}"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start, cpu_seconds() - cpu


def in_pool(function, jobs: list, workers: int) -> list:
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"), initializer=quiet) as pool:
            return list(pool.map(function, jobs))
    return [function(job) for job in jobs]


def print_table(results: list[dict]) -> None:
    print(f"\n{'task':<13} {'beta':>4} {'seed':>4} {'I∩ bits':>8} {'exact':>11} {'TV':>7}")
    for r in results:
        low, high = r["reference"]["true_redundancy"]
        exact = f"{low:.3f}" if abs(high - low) < 5e-4 else f"{low:.2f}-{high:.2f}"
        print(f"{r['task']:<13} {r['beta']:>4} {r['seed']:>4} {r['redundancy_bits']:>8.3f} {exact:>11} {r['disagreement_tv']:>7.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds per (task, beta); default 1")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.add_argument("--out", default=None, help="where runs go (default outputs/bench/<time>)")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--batched-only", action="store_true", help="time the batched path only (no ratio)")
    only.add_argument("--one-by-one", action="store_true", help="time the one-run path only (no ratio)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. trainer.max_epochs=15")
    args = parser.parse_args()
    out_dir = Path(args.out or ROOT / "outputs" / "bench" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    points = [(b, s) for b in BETAS for s in range(args.seeds)]
    n_runs = len(TASKS) * len(points)
    print(f"{n_runs} runs, {args.jobs} worker process(es), overrides: {' '.join(args.overrides) or 'none'}")

    timings = {}
    if not args.one_by_one:
        start = time.perf_counter()
        from rine.run import run_many

        grid = [(t, b, s) for t in TASKS for b, s in points]
        results = run_many(grid_configs(points, args.overrides),
                           [out_dir / "batched" / f"{t}_beta{b}_seed{s}" for t, b, s in grid], workers=args.jobs)
        timings["batched (rine.run.run_many)"] = time.perf_counter() - start
        end_to_end, grid_cpu = time.perf_counter() - START, cpu_seconds()
        load = os.getloadavg()[0]
        print_table(results)
        one_run, one_run_cpu = time_train_py()
        print(f"\nthe grid, end to end (process start to the last results.json): {end_to_end:.1f} s wall, "
              f"{grid_cpu:.1f} s CPU, for {n_runs} runs (load average {load:.1f})")
        print(f"one default `python train.py task=rdnxor`, cold: {one_run:.1f} s wall, {one_run_cpu:.1f} s CPU "
              f"(load average {os.getloadavg()[0]:.1f})")
        print(f"grid / one run: {end_to_end / one_run:.1f}x wall, {grid_cpu / one_run_cpu:.1f}x CPU")
    if not args.batched_only:
        start = time.perf_counter()
        grid = [(t, b, s, args.overrides, str(out_dir / "one_by_one")) for t in TASKS for b, s in points]
        results = in_pool(train_one, grid, args.jobs)
        timings["one by one (the train.py path)"] = time.perf_counter() - start
        if args.one_by_one:
            print_table(results)
        per_run = [r["wall_seconds"] for r in results]
        print(f"\none by one, per-run wall: mean {sum(per_run) / len(per_run):.2f} s, min {min(per_run):.2f} s, "
              f"max {max(per_run):.2f} s")
    print()
    for label, seconds in timings.items():
        print(f"{label}: {seconds:.1f} s for {n_runs} runs (jobs={args.jobs})")
    if len(timings) == 2:
        batched, separate = timings.values()
        print(f"one by one / batched: {separate / batched:.1f}x")
    print(f"total wall, start-up included: {time.perf_counter() - START:.1f} s -> {out_dir}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
