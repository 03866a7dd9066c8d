"""Training one estimate on Lightning's engine: build the decoders, the objective and the
trainer from a config, fit, and turn the per-epoch history into the figures results.json
reports (rine.outcome, shared with the batched engine).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig

from rine.config import build, constraint_control, inner_validation_fraction
from rine.console import EpochLines, quiet_framework_output
from rine.data import TaskData, TensorBatches, training_data
from rine.errors import RineError
from rine.estimator import BetaSchedule, RedundancyEstimator
from rine.files import save_torch_atomic
from rine.outcome import outcome_of
from rine.rundir import CHECKPOINT, write_metrics_csv
from rine.tracking import finish_wandb, is_wandb, wandb_logger

quiet_framework_output()  # Lightning, just imported, has added its console handlers


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but through a temporary file and a rename: a full disk or a
    kill mid-write leaves the previous checkpoint, never a truncated one."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        save_torch_atomic(path, checkpoint)


def _build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    return [wandb_logger(logger_cfg, cfg, run_dir) if is_wandb(logger_cfg)
            else build(logger_cfg, save_dir=str(run_dir)) for logger_cfg in (cfg.logger or {}).values()]


def _finish_loggers(loggers: list, outcome: dict | None) -> None:
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            finish_wandb(logger, outcome)


def progress_display(cfg: DictConfig, data: TaskData) -> str:
    """How a training shows its progress: "bar" (Lightning's, on a terminal), "lines" (one per
    epoch on stderr, for logs) or "none". report.progress=auto shows it for the long runs, those
    on images or with convolutional decoders; the canonical one-liners stay quiet."""
    import sys

    if cfg.report.progress != "auto":
        return cfg.report.progress
    long = data.views is not None or cfg.model.decoder._target_ != "rine.models.MLP"
    if not long:
        return "none"
    return "bar" if sys.stderr.isatty() else "lines"


def build_estimator(cfg: DictConfig, data: TaskData, run_dir: Path | None = None,
                    progress: str = "none") -> RedundancyEstimator:
    """The decoders (one per source, cfg.model.decoder) and the objective, as a LightningModule;
    with run_dir, csv/metrics.csv is rewritten after every epoch (and a line printed with
    progress="lines")."""
    if data.views is not None:  # image tasks: the sources are cut from raw images per batch
        shapes = data.views.shapes
    else:
        shapes = [tuple(s.shape[1:]) for s in data.train.sources]
    decoders = [build(cfg.model.decoder, input_shape=shape, n_classes=data.n_classes) for shape in shapes]
    return RedundancyEstimator(
        decoders,
        h_y_bits=data.h_y_bits,
        optimizer=build(cfg.model.optimizer),
        lr_decay=cfg.model.lr_decay,
        distance_normalization=cfg.distance.normalize,
        distance_pairs=cfg.distance.pairs,
        distance_smoothing=cfg.distance.smoothing,
        views=data.views,
        batch_norm_split=data.train if cfg.model.precise_batch_norm else None,
        eval_batch_size=cfg.model.eval_batch_size,
        log_history=_history_logger(run_dir, progress, cfg) if run_dir is not None else None,
    )


def _history_logger(run_dir: Path, progress: str, cfg: DictConfig):
    lines = EpochLines(cfg.trainer.max_epochs) if progress == "lines" else None

    def log(history: list[dict]) -> None:
        write_metrics_csv(run_dir, history)
        if lines is not None:
            lines(history)

    return log


def fit(cfg: DictConfig, task, run_dir: Path, resume_from: Path | None = None) -> dict:
    """Train one estimate of `task` with the one-run engine (Lightning) and return what
    results.json reports of it (outcome_of). Writes run_dir/csv/metrics.csv and, when
    checkpointing, run_dir/checkpoints/last.ckpt after every epoch; `resume_from` continues a
    killed attempt from its checkpoint (weights, optimizer, β and lr schedules, batch order).
    Raises RineError for unusable data or a diverged loss.
    """
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    data = training_data(task, cfg.seed, inner_validation_fraction(cfg))
    progress = progress_display(cfg, data)
    module = build_estimator(cfg, data, run_dir, progress)
    callbacks = [BetaSchedule(cfg.beta, cfg.gamma, cfg.beta_schedule, constraint_control(cfg))]
    if cfg.trainer.enable_checkpointing:
        callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=run_dir / CHECKPOINT.parent, filename=CHECKPOINT.stem,
                                                    enable_version_counter=False))
    # Lightning's CSV logger starts its file afresh: keep the epochs logged before a kill.
    loggers = _build_loggers(cfg, run_dir)
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(run_dir),
                    plugins=[AtomicCheckpointIO()], enable_progress_bar=progress == "bar")
    if data.views is not None:
        # Images are decoded once and kept on the training device: batches are cut there.
        device = trainer.strategy.root_device
        data.train, data.heldout = data.train.to(device), data.heldout.to(device)
        if data.inner is not None:
            data.inner = data.inner.to(device)
    shard = {"rank": trainer.global_rank, "world_size": trainer.world_size}  # DDP: this process's share
    outcome = None
    try:
        trainer.fit(
            module,
            train_dataloaders=TensorBatches(
                data.train, cfg.model.batch_size, shuffle=True, seed=cfg.seed,
                current_epoch=lambda: trainer.current_epoch, **shard,
            ),
            val_dataloaders=[TensorBatches(split, cfg.model.eval_batch_size, shuffle=False, **shard)
                             for split in (data.heldout, data.inner) if split is not None],
            ckpt_path=resume_from,
            weights_only=True,  # a checkpoint is data: nothing in it is executed
        )
        if len(module.history) < cfg.trainer.max_epochs:
            raise RineError(f"training stopped after {len(module.history)} of {cfg.trainer.max_epochs} epochs")
        outcome = outcome_of(module.history, data, cfg)
    finally:
        _finish_loggers(loggers, outcome)
    return outcome
