"""Configuration: compose it as train.py would, check it, and build the objects it names.

Every default lives in configs/ (the YAML); code reads the composed config and never
restates a default. `validate_config` is the one place every setting is checked, before a
run writes anything.
"""

from __future__ import annotations

import math
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rine.errors import RineError
from rine.objective import BETA_SCHEDULES, DISTANCE_NORMALIZATIONS, DISTANCE_PAIRS, ConstraintControl

MODES = ("estimate", "pid")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _on_gpu(accelerator: str) -> bool:
    import torch

    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _mixed_precision(accelerator: str) -> str:
    """bf16 autocast where an accelerator trains (configs/trainer/image.yaml); plain 32 on a CPU."""
    return "bf16-mixed" if _on_gpu(accelerator) else "32-true"


OmegaConf.register_new_resolver("rine_precision", _mixed_precision, replace=True)
# configs/trainer/ddp.yaml: torch's SyncBatchNorm runs on GPUs only.
OmegaConf.register_new_resolver("rine_on_gpu", _on_gpu, replace=True)


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    """The config train.py would see for these overrides (for scripts, tests, notebooks);
    with return_hydra_config, also its `hydra` node (e.g. an experiment's sweep params)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides or []), return_hydra_config=return_hydra_config)


def build(config, **kwargs):
    """hydra.utils.instantiate, but a RineError raised by the target surfaces as itself."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        while cause is not None and not isinstance(cause, RineError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


def uses_ddp(cfg: DictConfig) -> bool:
    """Whether the config trains one run over several processes (trainer=ddp)."""
    return "strategy" in cfg.trainer and "ddp" in str(cfg.trainer.strategy).lower()


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def constraint_control(cfg: DictConfig) -> ConstraintControl:
    c = cfg.constraint
    return ConstraintControl(target=c.target, growth=c.growth, max_factor=c.max_factor, start_epoch=c.start_epoch)


def validate_config(cfg: DictConfig) -> None:
    """Reject settings that would train something meaningless, before anything is written."""
    if cfg.mode not in MODES:
        raise RineError(f"mode={cfg.mode} is unknown; choose one of: {', '.join(MODES)}")
    beta = cfg.beta
    if not _is_number(beta) or beta < 0:
        raise RineError(f"beta={beta} is invalid; the agreement weight must be a number >= 0")
    if cfg.beta_schedule not in BETA_SCHEDULES:
        raise RineError(f"beta_schedule={cfg.beta_schedule} is unknown; choose one of: {', '.join(BETA_SCHEDULES)}")
    gamma = cfg.gamma
    if cfg.beta_schedule != "fixed" and (not _is_number(gamma) or not 0 < gamma < 1):
        # gamma = 1 would keep β_t = β(1 − γ^t) at 0 for ever: a β = 0 run labelled β > 0.
        raise RineError(f"gamma={gamma} is invalid; the β annealing rate must be in (0, 1) (paper: 0.97)")
    epochs = cfg.trainer.max_epochs
    if not isinstance(epochs, int) or epochs < 1:
        raise RineError(f"trainer.max_epochs={epochs} is invalid; train for at least 1 epoch")
    precision = str(cfg.trainer.precision)
    if "16" in precision and "bf16" not in precision:
        raise RineError(f"trainer.precision={precision} is not supported; use 32 or bf16-mixed")
    if cfg.mode == "pid" and uses_ddp(cfg):
        # Lightning starts the other DDP processes once per script; pid trains several models.
        raise RineError("mode=pid cannot run under trainer=ddp; drop trainer=ddp for mode=pid")
    if not isinstance(cfg.seed, int):
        raise RineError(f"seed={cfg.seed} is invalid; use an integer")
    distance = cfg.distance
    if distance.pairs not in DISTANCE_PAIRS:
        raise RineError(f"distance.pairs={distance.pairs} is unknown; choose one of: {', '.join(DISTANCE_PAIRS)}")
    if distance.normalize not in DISTANCE_NORMALIZATIONS:
        raise RineError(f"distance.normalize={distance.normalize} is unknown; "
                        f"choose one of: {', '.join(DISTANCE_NORMALIZATIONS)}")
    if not _is_number(distance.smoothing) or distance.smoothing < 0:
        raise RineError(f"distance.smoothing={distance.smoothing} is invalid; use a number >= 0 (0: plain L1)")
    if not _is_number(distance.warn_above) or distance.warn_above < 0:
        raise RineError(f"distance.warn_above={distance.warn_above} is invalid; use a total variation distance >= 0")
    c = cfg.constraint
    for key, ok, need in (("target", _is_number(c.target) and 0 < c.target < 1, "in (0, 1)"),
                          ("growth", _is_number(c.growth) and c.growth > 1, "> 1"),
                          ("max_factor", _is_number(c.max_factor) and c.max_factor >= 1, ">= 1"),
                          ("start_epoch", isinstance(c.start_epoch, int) and c.start_epoch >= 0, "an integer >= 0")):
        if not ok:
            raise RineError(f"constraint.{key}={c[key]} is invalid; use a number {need}")
    if (cfg.beta_schedule == "constrained" and cfg.beta > 0
            and str(cfg.model.optimizer._target_).rsplit(".", 1)[-1] == "SGD"):
        raise RineError(
            "beta_schedule=constrained raises β until the decoders agree, which plain SGD does not survive "
            "(its step grows with β); use an adaptive optimizer such as the default model=mlp (AdamW), "
            "or objective=paper (β annealed as in the paper)"
        )
    if not isinstance(cfg.report.last_epochs, int) or cfg.report.last_epochs < 1:
        raise RineError(f"report.last_epochs={cfg.report.last_epochs} is invalid; average at least 1 epoch")
    tolerance = cfg.report.bounds_tolerance_bits
    if not _is_number(tolerance) or tolerance < 0:
        raise RineError(f"report.bounds_tolerance_bits={tolerance} is invalid; use a number of bits >= 0")


