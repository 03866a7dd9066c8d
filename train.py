"""Estimate the redundant information of a task's sources about its target.

    python train.py                                   # RDNXOR, beta=15
    python train.py task=unq beta=5 seed=3
    python train.py -m task=unq,and,rdnxor,imperfectrdn beta=0,5,15 seed=0,1,2
"""

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import rine.rundir  # noqa: F401  (registers the resolver that names the run folder: ${rine_if_set:...})
from rine.errors import RineError

@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    from rine.config import uses_ddp  # late: fast --help
    from rine.console import quiet_framework_output, results_folder_is
    from rine.files import remove_folder_holding_only
    from rine.run import is_ddp_follower, keep_freed_memory, print_report, run

    quiet_framework_output()
    keep_freed_memory()
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        results_folder_is("hydra.sweep.dir", hydra_cfg.sweep.dir)
    else:
        results_folder_is("hydra.run.dir", hydra_cfg.runtime.output_dir)
    try:
        if hydra_cfg.mode == RunMode.MULTIRUN and uses_ddp(cfg):
            # Lightning would start each DDP process as the whole sweep again.
            raise RineError("trainer=ddp trains one run on several devices; start each point without -m")
        results = run(cfg, hydra_cfg.runtime.output_dir)
    except RineError as error:
        print(f"error: {error}", file=sys.stderr)
        remove_folder_holding_only(hydra_cfg.runtime.output_dir, {".hydra", "train.log"})  # bad input: no trace
        sys.exit(2)
    if is_ddp_follower():
        return results["redundancy_bits"]  # rank 0 reports
    print_report(results)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        # Complete and reported: a signal from here on (while Python shuts down) must not turn
        # the finished run into an interrupted exit status.
        import signal

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
    return results["redundancy_bits"]


def interrupted(signum: int) -> None:
    """Say how to go on after SIGTERM / Ctrl-C; exit 128 + the signal number, as a shell does."""
    import signal

    from rine.console import resume_command

    name = signal.Signals(signum).name
    print(f"interrupted by {name}: saved as interrupted (it goes on from its last complete epoch, if any); resume with: "
          f"{resume_command(sys.argv)}", file=sys.stderr)
    sys.exit(128 + signum)


if __name__ == "__main__":
    from rine.config import check_overrides
    from rine.console import interrupted_by, stop_on_signals

    stop_on_signals()
    try:
        check_overrides(sys.argv[1:])
    except RineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    try:
        main()
    except (KeyboardInterrupt, SystemExit):
        if interrupted_by() is None:
            raise
        interrupted(interrupted_by())
