"""Benchmark: the paper's Table 6 grid (4 canonical tasks x beta 0, 5, 15 x seeds) on the CPU.

    python scripts/bench_canonical.py [--seeds N] [--jobs J] [override ...]

Trains every run end to end through rine.run.run (the code train.py calls), prints each
estimate beside the exact value, then per-run and total wall seconds. Runs go to
outputs/bench/<time>/. Each worker process uses one thread: the MLPs are far too small
for intra-op parallelism to pay, so the cores are better spent on separate runs.
"""

import time

START = time.perf_counter()  # total wall time includes imports and process start-up

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from datetime import datetime  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("unq", "and", "rdnxor", "imperfectrdn")
BETAS = (0, 5, 15)


def quiet() -> None:
    import torch

    from rine.run import quiet_framework_output

    torch.set_num_threads(1)
    quiet_framework_output()


def train_one(args: tuple[str, int, int, list[str], str]) -> dict:
    task, beta, seed, overrides, out_dir = args
    quiet()
    from rine.run import compose_config, run

    cfg = compose_config([f"task={task}", f"beta={beta}", f"seed={seed}", *overrides])
    return run(cfg, Path(out_dir) / f"{task}_beta{beta}_seed{seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds per (task, beta); default 1")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    parser.add_argument("--out", default=None, help="where runs go (default outputs/bench/<time>)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. trainer.max_epochs=15")
    args = parser.parse_args()
    out_dir = Path(args.out or ROOT / "outputs" / "bench" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
    grid = [(t, b, s, args.overrides, str(out_dir)) for t in TASKS for b in BETAS for s in range(args.seeds)]
    print(f"{len(grid)} runs, {args.jobs} worker process(es), overrides: {' '.join(args.overrides) or 'none'}")

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=quiet) as pool:
            results = list(pool.map(train_one, grid))
    else:
        results = [train_one(job) for job in grid]

    print(f"\n{'task':<13} {'beta':>4} {'seed':>4} {'I∩ bits':>8} {'exact':>11} {'D':>7} {'wall s':>7}")
    for r in results:
        low, high = r["reference"]["true_redundancy"]
        exact = f"{low:.3f}" if abs(high - low) < 5e-4 else f"{low:.2f}-{high:.2f}"
        print(
            f"{r['task']:<13} {r['beta']:>4} {r['seed']:>4} {r['redundancy_bits']:>8.3f} {exact:>11} "
            f"{r['distance']:>7.4f} {r['wall_seconds']:>7.2f}"
        )
    per_run = [r["wall_seconds"] for r in results]
    total = time.perf_counter() - START
    print(
        f"\nper-run wall: mean {sum(per_run) / len(per_run):.2f} s, min {min(per_run):.2f} s, max {max(per_run):.2f} s; "
        f"sum {sum(per_run):.1f} s"
    )
    print(f"total wall: {total:.1f} s for {len(results)} runs (jobs={args.jobs}) -> {out_dir}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
