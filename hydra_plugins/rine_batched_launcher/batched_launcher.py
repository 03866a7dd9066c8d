"""A Hydra launcher that hands a sweep's small runs to rine.batched.run_many.

    python train.py -m task=unq,and beta=0,5,15 seed=0,1,2     (the default launcher)

Jobs whose configs differ only in seed and β train as one computation, the groups in
`n_jobs` processes at once; every other job (image tasks, mode=pid, trainer=ddp) runs
through train.py's own function one after another, as Hydra's basic launcher would.
Each job still gets its Hydra folder (.hydra/, its log) and its own results.json.
Hydra finds this module because train.py's folder, on sys.path, holds `hydra_plugins/`.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


class BatchedLauncher(Launcher):
    def __init__(self, n_jobs: int = -1) -> None:
        self.n_jobs = n_jobs
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context
        # Hydra's sweeper writes multirun.yaml before the jobs are checked: an earlier sweep's
        # is kept here, to be put back if this sweep is refused.
        self.previous_multirun = None
        try:
            self.sweep_dir = Path(str(config.hydra.sweep.dir))
            if (self.sweep_dir / "multirun.yaml").is_file():
                self.previous_multirun = (self.sweep_dir / "multirun.yaml").read_text()
        except Exception:  # noqa: BLE001 - an unresolvable folder: Hydra's sweeper says so
            self.sweep_dir = None
        _compose_each_job_once(hydra_context.config_loader, on_error=self._refuse_composition)

    def _refuse(self, message: str) -> None:
        """One line, exit 2, and the sweep folder as it was: an earlier sweep's multirun.yaml back,
        or no folder at all."""
        from rine.files import remove_folder_holding_only, write_text_atomic

        print(f"error: {message}", file=sys.stderr)
        if self.sweep_dir is not None:
            if self.previous_multirun is not None:
                write_text_atomic(self.sweep_dir / "multirun.yaml", self.previous_multirun)
            else:
                remove_folder_holding_only(self.sweep_dir, {"multirun.yaml"})
        sys.exit(2)

    def _refuse_composition(self, error: Exception, overrides: Sequence[str]) -> None:
        from rine.config import composition_error, config_groups

        choices = [o for o in overrides if o.split("=", 1)[0] in config_groups()]
        self._refuse(f"{composition_error(error, choices)} (in the job {' '.join(filter_overrides(overrides))})")

    @staticmethod
    def _number(sweep_config: DictConfig, idx: int) -> None:
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx

    def _job(self, sweep_config: DictConfig, overrides: Sequence[str], idx: int,
             task_function: TaskFunction) -> JobReturn:
        self._number(sweep_config, idx)
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        try:
            return run_job(hydra_context=self.hydra_context, task_function=task_function, config=sweep_config,
                           job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        finally:
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)

    def _job_dir(self, sweep_config: DictConfig, idx: int) -> str:
        """The folder Hydra's run_job gives this job (the same steps), known before it makes it."""
        self._number(sweep_config, idx)
        before = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(sweep_config)  # for ${hydra:...} in the folder's name
        try:
            folder = os.path.join(str(OmegaConf.select(sweep_config, "hydra.sweep.dir")),
                                  str(OmegaConf.select(sweep_config, "hydra.sweep.subdir")))
        finally:
            HydraConfig.instance().cfg = before
            OmegaConf.set_readonly(sweep_config.hydra, False)  # (set_config made it read-only; as composed)
        return os.path.abspath(folder)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from rine.batched import supported
        from rine.config import uses_ddp, validate_config
        from rine.console import quiet_framework_output, results_folder_is
        from rine.errors import RineError
        from rine.files import remove_folder_holding_only
        from rine.run import check, keep_freed_memory, print_report, run_many

        setup_globals()
        keep_freed_memory()  # groups may train in this process
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_configs = [self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                         for overrides in job_overrides]
        attempts: dict[int, object] = {}  # job -> rine.run.check of a batched job
        try:
            # Every job's settings first: a bad value stops the sweep before any job folder exists.
            # (A batched job's are checked with its data below, by rine.run.check.)
            for sweep_config in sweep_configs:
                if supported(sweep_config):
                    continue
                validate_config(sweep_config)
                if uses_ddp(sweep_config):  # Lightning would start each DDP process as the whole sweep again
                    raise RineError("trainer=ddp trains one run on several devices; start each point without -m")
            job_dirs = []
            for i, sweep_config in enumerate(sweep_configs):
                try:
                    job_dirs.append(self._job_dir(sweep_config, initial_job_idx + i))
                except Exception as error:  # noqa: BLE001 - e.g. an interpolation naming no setting
                    raise RineError(f"hydra.sweep.dir / hydra.sweep.subdir cannot name job #{i}'s folder: "
                                    f"{str(error).splitlines()[0]}") from None
            first_in: dict[str, int] = {}
            for i, job_dir in enumerate(job_dirs):
                if job_dir in first_in:  # the second would find the first's lock, or replace its result
                    j = first_in[job_dir]
                    raise RineError(
                        f"jobs #{j} ({' '.join(filter_overrides(job_overrides[j]))}) and #{i} "
                        f"({' '.join(filter_overrides(job_overrides[i]))}) would write one folder, {job_dir}; "
                        "name each job's folder apart in hydra.sweep.subdir (e.g. with every swept key)")
                first_in[job_dir] = i
            # The batched jobs' data (files, sizes) before Hydra makes their folders: a refused
            # sweep leaves the folders of an earlier sweep as they were.
            tasks: dict = {}
            for i, sweep_config in enumerate(sweep_configs):
                if supported(sweep_config):
                    task_config = copy.deepcopy(sweep_config)
                    with open_dict(task_config):
                        del task_config["hydra"]  # what run_job hands the task
                    attempts[i] = check(task_config, job_dirs[i], tasks)
        except RineError as error:
            self._refuse(str(error))
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        results_folder_is("hydra.sweep.dir", str(self.config.hydra.sweep.dir))
        quiet_framework_output()
        log.info(f"Launching {len(job_overrides)} jobs, small ones batched")

        returns: list[JobReturn | None] = [None] * len(job_overrides)
        batched: list[tuple[int, DictConfig, str]] = []  # (job, config, run dir)
        one_by_one: list[tuple[int, DictConfig]] = []
        for i, (overrides, sweep_config) in enumerate(zip(job_overrides, sweep_configs)):
            if not supported(sweep_config):
                one_by_one.append((i, sweep_config))
                continue

            def collect(cfg: DictConfig, i=i) -> None:
                # Hydra has made the job's folder and .hydra/; training comes after, batched.
                batched.append((i, cfg, HydraConfig.get().runtime.output_dir))

            returns[i] = self._job(sweep_config, overrides, initial_job_idx + i, collect)

        workers = self.n_jobs if self.n_jobs > 0 else os.cpu_count() or 1
        progress = SweepProgress(len(job_overrides))
        try:
            # (checked above, unless Hydra named a folder otherwise than _job_dir: then again here)
            checked = ([attempts[i] for i, _, _ in batched]
                       if all(os.path.abspath(d) == job_dirs[i] for i, _, d in batched) else None)
            results = run_many([c for _, c, _ in batched], [d for _, _, d in batched], workers=workers,
                               on_result=lambda result: print_report(result, prefix=progress.step()), attempts=checked)
        except RineError as error:
            print(f"error: {error}", file=sys.stderr)
            # Refused before training (a task's data, a file): the job folders Hydra made hold
            # only .hydra/ and train.log and go, as a refused single run's does. A run that began
            # keeps its folder and results.json saying how it stopped.
            sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
            for _, _, run_dir in batched:
                remove_folder_holding_only(run_dir, {".hydra", "train.log"})
                parent = Path(run_dir).resolve().parent
                while parent != sweep_dir and sweep_dir in parent.parents and not any(parent.iterdir()):
                    parent.rmdir()  # a nested subdir (hydra.sweep.subdir=a/b) left empty
                    parent = parent.parent
            remove_folder_holding_only(sweep_dir, {"multirun.yaml"})
            sys.exit(2)
        for (i, _, _), result in zip(batched, results):
            returns[i].return_value = result["redundancy_bits"]
            returns[i].status = JobStatus.COMPLETED
        for i, sweep_config in one_by_one:
            print(f"{progress.step()}{' '.join(filter_overrides(job_overrides[i]))}: training", file=sys.stderr, flush=True)
            returns[i] = self._job(sweep_config, job_overrides[i], initial_job_idx + i, self.task_function)
        return returns


def _compose_each_job_once(config_loader, on_error=None) -> None:
    """Make a sweep's configs cheap to compose (each Hydra compose costs ~0.1 s: 6 s of a 60-job sweep).

    - Hydra's sweeper composes every job's config to check it, then the launcher asks again:
      the second request gets the first config (then it is dropped; if Hydra stops asking
      twice, each job is simply composed once).
    - Jobs that differ from an already composed job only in plain values (`seed=3`, `beta=5`:
      no config group, no +/~, a scalar) are that job's config with those values applied, the
      way Hydra applies them after composing (its own _apply_overrides_to_config), and their
      overrides recorded as Hydra records them: a deep copy (~4 ms) in place of a compose. A
      value override never changes the defaults list (Hydra's defaults interpolate config
      group choices only), so the copy is the config Hydra would compose (a test compares
      both). Anything else, or any error on this path, is composed by Hydra itself.
    - A job Hydra cannot compose goes to `on_error(error, overrides)` (the launcher's one-line
      refusal), not to Hydra's error page.
    """
    compose = config_loader.load_sweep_config
    if getattr(compose, "composes_once", False):
        return
    composed: dict = {}
    templates: dict = {}  # (master config, the job's overrides with plain values left out) -> a composed job

    def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key in composed:
            return composed.pop(key)
        config, values = None, None
        try:
            shape, parsed, values = _plain_values(config_loader, sweep_overrides)
            template = templates.get((id(master_config), shape)) if values is not None else None
            if template is not None:
                config = _with_values(template, parsed, values, master_config)
        except Exception:  # noqa: BLE001 - Hydra's own compose says what is wrong
            config = None
        if config is None:
            try:
                config = compose(master_config, sweep_overrides)
            except HydraException as error:
                if on_error is None:
                    raise
                on_error(error, sweep_overrides)  # (one line and exit: the launcher's _refuse_composition)
                raise
            if values is not None:  # (None also where its overrides could not be read)
                templates.setdefault((id(master_config), shape), copy.deepcopy(config))
        composed[key] = config
        return config

    load_sweep_config.composes_once = True
    config_loader.load_sweep_config = load_sweep_config


def _plain_values(config_loader, overrides: list[str]) -> tuple[tuple, list, list | None]:
    """(the overrides' shape: each line, or ("value", key) for a plain value; all overrides
    parsed; the plain value overrides, or None where only Hydra's compose is right). A plain
    value: `key=scalar`, no +/~/@package, not a config group and not under hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    parsed = OverridesParser.create().parse_overrides(overrides=list(overrides))
    shape, values, others = [], [], []
    for override in parsed:
        value = override.value()
        group = config_loader.repository.group_exists(override.key_or_group)
        plain = (override.type == OverrideType.CHANGE and override.package is None
                 and not override.is_sweep_override() and not override.is_hydra_override()
                 and isinstance(value, (bool, int, float, str)) and value is not None and not group)
        shape.append(("value", override.key_or_group) if plain else override.input_line)
        if plain:
            values.append(override)
        elif not group and not override.is_hydra_override():
            others.append(override.key_or_group)
    # Hydra applies the value overrides in their order; a copy applies the plain ones last. So
    # a plain key that another (+, ++, ~, a dict) touches, itself or above or below it, keeps
    # every job of that shape on Hydra's own compose.
    for key in (o.key_or_group for o in values):
        if any(other == key or other.startswith(key + ".") or key.startswith(other + ".") for other in others):
            return tuple(shape), parsed, None
    return tuple(shape), parsed, values


def _with_values(template: DictConfig, parsed: list, values: list, master_config: DictConfig) -> DictConfig:
    """A copy of a composed job's config with another job's plain values, as Hydra's
    load_configuration would give that job (after load_sweep_config's cache copy)."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname

    if any(key in template.hydra.runtime.choices for key in (o.key_or_group for o in values)):
        return None  # a config group after all (e.g. from a searchpath of its own): compose
    config = copy.deepcopy(template)
    ConfigLoaderImpl._apply_overrides_to_config(values, config)
    task = [o for o in parsed if not o.is_hydra_override()]
    dirname = config.hydra.job.config.override_dirname
    with open_dict(config.hydra):
        config.hydra.overrides.task = [o.input_line for o in task]
        config.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
    OmegaConf.copy_cache(from_config=master_config, to_config=config)
    return config


class SweepProgress:
    """'[3/36, ETA 2 min] ': how far a sweep is, put before each run's line."""

    def __init__(self, total: int):
        import time

        self.total, self.done, self.clock = total, 0, time.perf_counter
        self.start = self.clock()

    def step(self) -> str:
        from rine.console import duration

        self.done += 1
        if self.done == 1:
            # The first result carries the start-up (imports, data, a whole batched group):
            # the rate is measured from it on.
            self.first = self.clock()
        if self.done == 1 or self.done == self.total:
            return f"[{self.done}/{self.total}] "
        left = (self.clock() - self.first) / (self.done - 1) * (self.total - self.done)
        if left < 1:  # runs of one batched group arrive together: no estimate yet
            return f"[{self.done}/{self.total}] "
        return f"[{self.done}/{self.total}, ETA {duration(left)}] "
