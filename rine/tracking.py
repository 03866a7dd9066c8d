"""Weights & Biases (`logger=wandb`): every run's composed config, its per-epoch history and
its results.json figures, from either training engine.

The one-run engine logs through Lightning's WandbLogger while it trains (rine.training
builds it with `wandb_logger`, then `finish_wandb` adds the figures); the batched engine has
no Lightning loop, so each of its runs gets its W&B run when it completes
(`log_completed_run`), from the same history rows. Both give a W&B run with the composed
config, one history step per epoch (the csv/metrics.csv columns, `epoch` and, as Lightning
logs it, `trainer/global_step` = metrics.csv's step − 1) and a summary holding results.json's figures (`summary_of`).
Runs stay offline (files under <run dir>/wandb/) unless WANDB_MODE says otherwise.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# results.json keys left out of the W&B summary: the settings (in the config) and the
# per-epoch curve (the history).
NOT_SUMMARIZED = ("curve", "run_dir", "started_at", "resume_from", "task", "mode", "beta", "beta_schedule", "gamma",
                  "seed", "width", "pmf_file", "data_file", "max_epochs", "distance_normalization",
                  "distance_smoothing", "distance_pairs")
# WandbLogger arguments that are Lightning's, not wandb.init's.
LIGHTNING_ONLY = ("_target_", "log_model", "prefix", "checkpoint_name", "experiment", "save_dir", "dir", "offline",
                  "anonymous", "version")


def is_wandb(logger_cfg: DictConfig) -> bool:
    return "Wandb" in str(logger_cfg.get("_target_", ""))


def wandb_logger_config(cfg: DictConfig) -> DictConfig | None:
    """The config of the run's W&B logger (configs/logger/wandb.yaml), or None without one."""
    return next((c for c in (cfg.get("logger") or {}).values() if is_wandb(c)), None)


def _offline_unless_chosen() -> None:
    # Never reach for the network unless the user chose a mode (e.g. WANDB_MODE=online).
    os.environ.setdefault("WANDB_MODE", "offline")


def run_config(cfg: DictConfig) -> dict:
    """The composed config as W&B records it (resolved), so runs can be grouped and filtered
    by task, beta, seed, gamma, model, ..."""
    return OmegaConf.to_container(cfg, resolve=True)


def summary_of(results: dict) -> dict:
    """results.json's figures for a W&B run summary (redundancy_bits, usable_info_bits,
    disagreement_tv, constraint_met, valid, reference, ...), settings and the curve aside."""
    return {key: value for key, value in results.items() if key not in NOT_SUMMARIZED}


def wandb_logger(logger_cfg: DictConfig, cfg: DictConfig, run_dir: Path):
    """Lightning's WandbLogger for the one-run engine, with the composed config logged."""
    from rine.config import build

    _offline_unless_chosen()
    logger = build(logger_cfg, save_dir=str(run_dir))
    logger.log_hyperparams(run_config(cfg))
    return logger


def finish_wandb(logger, outcome: dict | None) -> None:
    """Put the run's figures (None: it stopped early) in its summary and close it, so that each
    run (and each multirun job) is its own W&B run."""
    import wandb
    from lightning.pytorch.utilities import rank_zero_only

    if outcome is not None and rank_zero_only.rank == 0:  # DDP: rank 0 holds the W&B run
        logger.experiment.summary.update(summary_of(outcome))
    wandb.finish()


def log_completed_run(cfg: DictConfig, run_dir: Path, history: list[dict], results: dict) -> None:
    """Write the W&B run of a run the batched engine trained: the composed config, one step per
    epoch of `history` (as Lightning's WandbLogger logs them) and results.json's figures.

    A failure (e.g. WANDB_MODE=online without a login) is a warning on stderr: the run's own
    files are complete by then.
    """
    logger_cfg = wandb_logger_config(cfg)
    if logger_cfg is None:
        return
    _offline_unless_chosen()
    node = OmegaConf.to_container(logger_cfg, resolve=True)
    init = {key: value for key, value in node.items() if key not in LIGHTNING_ONLY}
    if node.get("offline"):
        init["mode"] = "offline"
    if node.get("version"):
        init["id"] = node["version"]
    try:
        import wandb

        run = wandb.init(**init, dir=str(run_dir), config=run_config(cfg), settings=wandb.Settings(silent=True))
        try:
            run.define_metric("trainer/global_step")
            run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
            for row in history:
                # Lightning's step of an epoch's metrics is its last batch's index: metrics.csv's step − 1.
                run.log({**{k: v for k, v in row.items() if k != "step"}, "trainer/global_step": row["step"] - 1})
            run.summary.update(summary_of(results))
        finally:
            run.finish()
    except Exception as error:  # noqa: BLE001 - W&B is a copy; the run's own record is written
        print(f"warning: {run_dir}: not logged to W&B ({type(error).__name__}: {error})", file=sys.stderr, flush=True)
