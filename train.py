"""Estimate the redundant information of a task's sources about its target.

    python train.py                                   # RDNXOR, beta=15
    python train.py task=unq beta=5 seed=3
    python train.py -m task=unq,and,rdnxor,imperfectrdn beta=0,5,15 seed=0,1,2
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import rine.rundir  # noqa: F401  (registers the resolver that names the run folder: ${rine_if_set:...})
from rine.errors import RineError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CHECKED_GROUPS = ("task", "model", "trainer", "logger", "experiment")


def check_group_choices(argv: list[str]) -> None:
    """Fail with one line on an unknown config-group option (Hydra's own error is a page long)."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in CHECKED_GROUPS or not value or value == "null":
            continue
        known = sorted(p.stem for p in (CONFIG_DIR / key).glob("*.yaml"))
        for choice in value.split(","):
            if choice.strip() not in known:
                raise RineError(f"unknown {key} {choice.strip()!r}; choose one of: {', '.join(known)}")


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float:
    from rine.config import uses_ddp  # late: fast --help
    from rine.console import quiet_framework_output
    from rine.run import is_ddp_follower, print_report, run

    quiet_framework_output()
    try:
        if HydraConfig.get().mode == RunMode.MULTIRUN and uses_ddp(cfg):
            # Lightning would start each DDP process as the whole sweep again.
            raise RineError("trainer=ddp trains one run on several devices; start each point without -m")
        results = run(cfg, HydraConfig.get().runtime.output_dir)
    except RineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if is_ddp_follower():
        return results["redundancy_bits"]  # rank 0 reports
    print_report(results)
    return results["redundancy_bits"]


if __name__ == "__main__":
    try:
        check_group_choices(sys.argv[1:])
    except RineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    main()
