"""The run lifecycle: check -> begin -> train (estimate | pid) -> finish, for one run (`run`)
or many (`run_many`, which batches what can share a computation); resuming a killed run; the
other processes of a DDP run; and what a run prints.

train.py calls `run` inside Hydra, its default multirun launcher calls `run_many`, and
scripts, tests and the Python API call them with a config from rine.config.compose_config,
so every entry point trains through the same code.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rine.config import build, validate_config
from rine.console import quiet_framework_output
from rine.errors import RineError
from rine.figures import draw_run_curves
from rine.files import save_torch_atomic
from rine.rundir import (DECODERS_CHECKPOINT, GROUP_CHECKPOINT, Attempt, RunRecord, previous_attempt, read_results,
                         write_metrics_csv)


def check(cfg: DictConfig, run_dir: str | Path, tasks: dict | None = None) -> Attempt:
    """Everything that can be checked before a run writes anything: the settings, the task's
    inputs (built here, or taken from `tasks`, the tasks already built by their resolved
    config), and what run_dir already holds of this config and data.
    Raises RineError for bad settings or task inputs (e.g. a pmf file).
    """
    validate_config(cfg)
    if tasks is None:
        task = build(cfg.task)
    else:
        # A sweep's runs share a few tasks: each is built (its files read, its references
        # looked up) once. A task's data comes from task.setup(seed), so sharing is safe.
        key = OmegaConf.to_yaml(cfg.task, resolve=True)
        if key not in tasks:
            tasks[key] = build(cfg.task)
        task = tasks[key]
    if cfg.early_stopping.enabled:
        # Checked before a run writes anything: the size of the training split (one setup a task).
        from rine.data import inner_validation_size

        inner_validation_size(data_sizes(task)[0], cfg.early_stopping.fraction, f"task {cfg.task.name}")
    attempt = previous_attempt(cfg, run_dir, task)
    if cfg.mode == "pid":
        # mode=pid trains several models in one folder: a killed one starts afresh.
        attempt.resume_from = None
    return attempt


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train one estimate and write `run_dir/results.json`; returns the results.

    Re-running the same config on the same data in the same run_dir is safe and cheap: a
    complete run is not trained again (its results come back with `skipped: True`), and a
    run that was killed resumes from its last epoch's checkpoint, β and lr schedules included.
    """
    if is_ddp_follower():
        return _follow(cfg, Path(run_dir))
    attempt = check(cfg, run_dir)
    if attempt.complete is not None:
        return attempt.complete
    if uses_batched_engine(cfg, attempt.task):
        return _run_checked([cfg], [run_dir], [attempt])[0]
    return _run_one(cfg, run_dir, attempt)


def uses_batched_engine(cfg: DictConfig, task) -> bool:
    """Whether this run trains on rine.batched's engine (pure torch, many runs side by side):
    `engine=auto` for what it supports (MLP decoders on in-memory sources, mode=estimate, one
    device), else Lightning's (rine.training), which `engine=lightning` forces."""
    from rine.batched import supported

    return cfg.engine == "auto" and supported(cfg, task)


def _run_one(cfg: DictConfig, run_dir: str | Path, attempt: Attempt) -> dict:
    """One run checked with `check`, trained on Lightning's engine (or mode=pid's trainings)."""
    record = RunRecord.begin(cfg, run_dir, attempt.task, attempt.resume_from)
    if attempt.resume_from is not None:
        print(f"resuming {run_dir} from {attempt.resume_from}", file=sys.stderr, flush=True)
    try:
        if cfg.mode == "pid":
            from rine.pid import train_pid

            outcome = train_pid(cfg, attempt.task, Path(run_dir))
        else:
            from rine.training import fit

            outcome = fit(cfg, attempt.task, Path(run_dir), attempt.resume_from)
    except BaseException as error:
        record.stopped(error)
        raise
    if attempt.resume_from is not None:
        outcome = {**outcome, "resumed": True}
    draw_run_curves(cfg, run_dir, {**record.settings, **outcome})
    return record.complete(outcome)


def is_ddp_follower() -> bool:
    """Whether this process is one of the DDP ranks > 0 that Lightning started beside rank 0.

    Lightning re-runs train.py for them with LOCAL_RANK (and NODE_RANK) set; they train
    their share and leave every file to rank 0.
    """
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def _follow(cfg: DictConfig, run_dir: Path) -> dict:
    """A DDP rank > 0: train beside rank 0, from the checkpoint rank 0 chose, writing nothing."""
    from rine.training import fit

    validate_config(cfg)
    record = read_results(run_dir) or {}
    if record.get("status") != "running":
        raise RineError(f"this DDP process found no run begun by rank 0 in {run_dir}; start train.py without LOCAL_RANK set")
    resume_from = record.get("resume_from")
    outcome = fit(cfg, build(cfg.task), run_dir, Path(resume_from) if resume_from else None)
    return {**record, **outcome}


# A batched group holds each run's data about this many times over (the task's tensors, the
# stacked features-major copy, each epoch's batch order gathered, held-out passes); measured:
# 8 runs of 2 sources x 50,000 x 1,024 floats took 12 GB.
DATA_COPIES = 4


@functools.lru_cache(maxsize=8)
def data_sizes(task) -> tuple[int, int]:
    """(training samples, bytes of one run's training and held-out sources) of `task`, from one
    setup. A task splits by fixed fractions (stratified for task=arrays), so neither depends on
    the seed; the tensors themselves are not kept."""
    data = task.setup(0)
    return len(data.train), sum(s.element_size() * s.numel() for split in (data.train, data.heldout)
                                for s in split.sources)


def _available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _parts_that_fit(members: list, processes: int) -> list[list]:
    """A batched group cut into consecutive parts whose data fits one process's share of the
    free memory (the machine's MemAvailable over the `processes` training at once, 80% of it):
    a sweep of many seeds of a large dataset would otherwise be killed for memory. Runs share
    no parameter, so a part trains each run exactly as the whole group would."""
    budget = _available_memory_bytes()
    if budget is None or len(members) < 2:
        return [members]
    per_run = DATA_COPIES * data_sizes(members[0][2])[1]
    fit = max(1, int(0.8 * budget / max(processes, 1) // max(per_run, 1)))
    if fit >= len(members):
        return [members]
    print(f"note: {len(members)} runs train in parts of {fit} (~{per_run / 2**30:.1f} GB of data a run, "
          f"{budget / 2**30:.1f} GB of memory free)", file=sys.stderr, flush=True)
    return [members[i:i + fit] for i in range(0, len(members), fit)]


def _train_group_and_finish(members: list[tuple[int, DictConfig, object, RunRecord]]) -> list[tuple[int, dict]]:
    """Train one group of begun runs as one computation and write each run's log and results.

    The group's checkpoint lives in its first run's folder. A killed group (SIGKILL,
    Ctrl-C) resumes from it when the same runs are started again; a group that failed
    with an error, or finished, removes it.
    """
    from rine.batched import train_group
    from rine.tracking import log_completed_run
    from rine.outcome import outcome_of

    checkpoint = members[0][3].run_dir / GROUP_CHECKPOINT
    identity = [[str(record.run_dir), OmegaConf.to_yaml(cfg)] for _, cfg, _, record in members]
    try:
        trained, resumed = train_group([cfg for _, cfg, _, _ in members], [task for _, _, task, _ in members],
                                       checkpoint, identity)
    except BaseException as error:
        for _, _, _, record in members:
            record.stopped(error)
        if not isinstance(error, (KeyboardInterrupt, SystemExit)):
            checkpoint.unlink(missing_ok=True)
        raise
    finished = []
    for (i, cfg, _, record), (history, data, decoders) in zip(members, trained):
        write_metrics_csv(record.run_dir, history)
        if cfg.trainer.enable_checkpointing:
            save_torch_atomic(record.run_dir / DECODERS_CHECKPOINT,
                              {"state_dict": decoders, "epoch": len(history) - 1, "rine_history": history})
        outcome = {**outcome_of(history, data, cfg), "batched_with": len(members)}
        if resumed:  # from the group's checkpoint, not a last.ckpt of its own
            outcome.update(resumed=True, resume_from=str(checkpoint))
        draw_run_curves(cfg, record.run_dir, {**record.settings, **outcome}, history)
        finished.append((i, record.complete(outcome)))
        log_completed_run(cfg, record.run_dir, history, finished[-1][1])  # logger=wandb: its W&B run
    checkpoint.unlink(missing_ok=True)
    return finished


def keep_freed_memory() -> None:
    """Let this process reuse the memory its tensors free instead of handing it back to the
    system after every step (glibc malloc only; elsewhere nothing changes).

    glibc serves allocations above a moving threshold by fresh pages and trims its heap as it
    shrinks, so the ~1 MB activations of a batched step were zero-filled by the kernel again
    every step: ~5,000 page faults an epoch for 60 decoders. Fixed thresholds (allocations up
    to 32 MB from the heap, up to 256 MB of free heap kept) halve a sweep worker's faults. Only our own
    processes (train.py, sweep workers) call this, never a user's Python session (the API).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD (glibc's maximum on 64-bit)
        libc.mallopt(-1, 256 * 2**20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (e.g. musl): its own allocator, left as it is
        pass


def _quiet_worker() -> None:
    import torch

    if sys.platform == "linux":
        # Die with the sweep: a killed sweep must not leave groups training on (and writing)
        # beside the one started again. 1 is PR_SET_PDEATHSIG.
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    keep_freed_memory()
    torch.set_num_threads(1)  # the cores are the workers' (each group sets model.threads too)
    quiet_framework_output()


def run_many(
    cfgs: list[DictConfig],
    run_dirs: list[str | Path],
    workers: int = 1,
    on_result: Callable[[dict], None] | None = None,
    attempts: list[Attempt] | None = None,
) -> list[dict]:
    """Train every config in its run dir, batching those that can share a computation
    (rine.batched: configs that differ only in seed and β, MLP decoders, mode=estimate).

    Complete runs are skipped as in `run`; the others train on Lightning's engine one after
    another in this process. With `workers` > 1 the batched groups train in that many
    processes at once. `on_result` sees each run's results as soon as they are written.
    `attempts`: each config's `check`, where the caller made them already (the sweep launcher,
    before Hydra makes the job folders). Returns the results of every run, in order.
    """
    # Every config is checked, and every task's inputs read, before any run writes a file:
    # a bad one stops the sweep clean.
    if attempts is None:
        tasks: dict = {}
        attempts = [check(cfg, run_dir, tasks) for cfg, run_dir in zip(cfgs, run_dirs)]
    return _run_checked(cfgs, run_dirs, attempts, workers, on_result)


def _run_checked(cfgs: list[DictConfig], run_dirs: list, attempts: list[Attempt], workers: int = 1,
                 on_result: Callable[[dict], None] | None = None) -> list[dict]:
    from rine.batched import batch_key

    results: list[dict | None] = [None] * len(cfgs)

    def done(i: int, result: dict) -> None:
        results[i] = result
        if on_result is not None:
            on_result(result)

    groups: dict[str, list] = {}
    one_by_one = []
    begun: list[tuple[int, RunRecord]] = []
    try:
        for i, (cfg, run_dir, attempt) in enumerate(zip(cfgs, run_dirs, attempts)):
            if attempt.complete is not None:
                done(i, attempt.complete)
            elif not uses_batched_engine(cfg, attempt.task):
                one_by_one.append(i)
            else:
                record = RunRecord.begin(cfg, run_dir, attempt.task, attempt.resume_from)
                begun.append((i, record))
                groups.setdefault(batch_key(cfg, attempt.task), []).append((i, cfg, attempt.task, record))
        parts = [part for members in groups.values() for part in _parts_that_fit(members, workers)]
        groups = _spread(parts, workers)
        if workers > 1 and len(groups) > 1:
            # Forked workers skip re-importing torch (seconds each). Safe: they run torch on one
            # thread, so no OpenMP pool inherited from this process is ever entered.
            context = get_context("fork" if sys.platform == "linux" else "spawn")
            with ProcessPoolExecutor(min(workers, len(groups)), mp_context=context, initializer=_quiet_worker) as pool:
                futures = [pool.submit(_train_group_and_finish, members) for members in groups]
                for future in as_completed(futures):
                    for i, result in future.result():
                        done(i, result)
        else:
            for members in groups:
                for i, result in _train_group_and_finish(members):
                    done(i, result)
    except BaseException as error:
        # Stopped before a group's own handler could say so (e.g. Ctrl-C while importing the
        # engine): every begun run not yet reported is saved as stopped, never left "running".
        for i, record in begun:
            if results[i] is None and record.lock is not None:
                record.stopped(error)
        raise
    for i in one_by_one:
        done(i, _run_one(cfgs[i], run_dirs[i], attempts[i]))
    return results


def _spread(groups: list[list], workers: int, smallest: int = 4) -> list[list]:
    """Split the largest groups until every worker has one (a group trains on one core), keeping
    each part at least `smallest` runs: a step of many runs costs little more than one of a few."""
    groups = [g for g in groups if g]
    while len(groups) < workers:
        largest = max(groups, key=len, default=[])
        if len(largest) < 2 * smallest:
            break
        groups.remove(largest)
        half = len(largest) // 2
        groups += [largest[:half], largest[half:]]
    return groups


def print_report(results: dict, prefix: str = "") -> None:
    """What train.py prints of a run: the summary line (after `prefix`, e.g. a sweep's progress),
    then on stderr each warning, naming the run."""
    print(prefix + format_summary(results), flush=True)
    for warning in run_warnings(results):
        print(f"warning: {results['run_dir']}: {warning}", file=sys.stderr, flush=True)


def run_warnings(results: dict) -> list[str]:
    """The run's warnings, most serious first: an invalid estimate, disagreeing decoders, untrusted PID atoms."""
    found = []
    if results.get("valid") is False:
        found.append("INVALID ESTIMATE, do not use it: " + "; ".join(results.get("invalid_reasons") or []))
    if results.get("warning"):
        found.append(results["warning"])
    if results.get("convergence_warning"):
        found.append(results["convergence_warning"])
    found += (results.get("pid") or {}).get("warnings") or []
    return found


def format_summary(results: dict) -> str:
    """One line: task, the crop width (image tasks), β (and what the constrained schedule raised
    it to), the estimate, the exact value when known, the decoders' disagreement (mean total
    variation), and the run folder.

    mode=pid adds a second line with the atoms.
    """
    beta = f"beta={results['beta']:g}"
    if results.get("beta_schedule") == "constrained" and results.get("beta_final", 0) > results["beta"] * 1.0001:
        beta += f"→{results['beta_final']:.3g}"
    width = f"width={results['width']}  " if results.get("width") is not None else ""  # image tasks' crop width
    reference = results.get("reference") or {}
    if results["beta"] == 0 and results.get("mode", "estimate") == "estimate":
        # No agreement asked: the figure is the decoders' mean usable information, not a redundancy.
        line = f"{results['task']}  {width}{beta}  mean usable information = {results['redundancy_bits']:.2f} bits"
        line += " (β = 0: not a redundancy)"
        if results.get("valid") is False:
            line += " (INVALID: see warning)"
        if reference.get("mi_sources"):
            line += f"  (exact {sum(reference['mi_sources']) / len(reference['mi_sources']):.2f})"
    else:
        line = f"{results['task']}  {width}{beta}  I∩ = {results['redundancy_bits']:.2f} bits"
        if results.get("valid") is False:
            line += " (INVALID: see warning)"
        elif results["redundancy_bits"] < -0.005 and results.get("redundancy_se_bits") is not None:
            # Negative information is impossible: say that this one is within its noise.
            line += f" (below 0 within its noise: SE {results['redundancy_se_bits']:.2f})"
        truth = reference.get("true_redundancy")
        if truth:
            low, high = truth
            exact = f"{low:.2f}" if abs(high - low) < 5e-3 else f"{low:.2f}–{high:.2f}"
            line += f"  (exact {exact})"
        elif reference.get("i_wedge") is not None and reference.get("min_mi_sources") is not None:
            # A pmf of the user's: no agreed truth, but the smallest and largest common measures.
            line += f"  (I∧ {reference['i_wedge']:.2f}, MMI {reference['min_mi_sources']:.2f})"
    if results.get("disagreement_tv") is not None:
        line += f"  TV = {results['disagreement_tv']:.3f}"  # the agreement reached, beside every redundancy
    done = "  (already complete, not re-trained)" if results.get("skipped") else ""
    line = f"{line}  -> {results['run_dir']}{done}"
    if results.get("pid"):
        from rine.pid import format_pid

        line += "\n" + format_pid(results["pid"])
    return line
