"""One RINE run from a composed config: build, train, and write results.json atomically.

train.py calls `run` inside Hydra; scripts and tests call it directly with a config
composed by `compose_config`, so every entry point trains through the same code.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rine.data import TensorBatches
from rine.errors import RineError
from rine.estimator import BETA_SCHEDULES, DISTANCE_PAIRS, BetaSchedule, RedundancyEstimator

RESULTS_FILE = "results.json"
CHECKPOINT = Path("checkpoints") / "last.ckpt"  # rewritten at the end of every epoch
MODES = ("estimate", "pid")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def _on_gpu(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def _mixed_precision(accelerator: str) -> str:
    """bf16 autocast where an accelerator trains (configs/trainer/image.yaml); plain 32 on a CPU."""
    return "bf16-mixed" if _on_gpu(accelerator) else "32-true"


OmegaConf.register_new_resolver("rine_precision", _mixed_precision, replace=True)
# configs/trainer/ddp.yaml: torch's SyncBatchNorm runs on GPUs only.
OmegaConf.register_new_resolver("rine_on_gpu", _on_gpu, replace=True)


def quiet_framework_output() -> None:
    """Keep the console to our own lines: Lightning's banner stays in train.log only."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            handler.setLevel(logging.WARNING)
    # Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; nothing for users to do.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=Warning)


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


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def write_json_atomic(path: Path, data: dict) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        json.dump(_finite_or_none(data), f, indent=2, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def uses_ddp(cfg: DictConfig) -> bool:
    """Whether the config trains one run over several processes (trainer=ddp)."""
    return "ddp" in str(cfg.trainer.get("strategy")).lower()


def validate_config(cfg: DictConfig) -> None:
    """Reject settings that would train something meaningless, before anything is written."""
    if cfg.get("mode", "estimate") not in MODES:
        raise RineError(f"mode={cfg.mode} is unknown; choose one of: {', '.join(MODES)}")
    beta = cfg.beta
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not math.isfinite(beta) or beta < 0:
        raise RineError(f"beta={beta} is invalid; the agreement weight must be a number >= 0")
    if cfg.beta_schedule not in BETA_SCHEDULES:
        raise RineError(f"beta_schedule={cfg.beta_schedule} is unknown; choose one of: {', '.join(BETA_SCHEDULES)}")
    gamma = cfg.gamma
    if not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        raise RineError(f"gamma={gamma} is invalid; the β annealing rate must be in (0, 1] (paper: 0.97)")
    epochs = cfg.trainer.max_epochs
    if not isinstance(epochs, int) or epochs < 1:
        raise RineError(f"trainer.max_epochs={epochs} is invalid; train for at least 1 epoch")
    precision = str(cfg.trainer.get("precision", "32"))
    if "16" in precision and "bf16" not in precision:
        raise RineError(f"trainer.precision={precision} is not supported; use 32 or bf16-mixed")
    if cfg.get("mode", "estimate") == "pid" and uses_ddp(cfg):
        # Lightning starts the other DDP processes once per script; pid trains several models.
        raise RineError("mode=pid cannot run under trainer=ddp; drop trainer=ddp for mode=pid")
    if not isinstance(cfg.seed, int):
        raise RineError(f"seed={cfg.seed} is invalid; use an integer")
    if cfg.distance.get("pairs", "all") not in DISTANCE_PAIRS:
        raise RineError(f"distance.pairs={cfg.distance.pairs} is unknown; choose one of: {', '.join(DISTANCE_PAIRS)}")
    warn_above = cfg.distance.get("warn_above", 0.05)
    if not isinstance(warn_above, (int, float)) or isinstance(warn_above, bool) or warn_above < 0:
        raise RineError(f"distance.warn_above={warn_above} is invalid; use a total variation distance >= 0")
    if not isinstance(cfg.report.last_epochs, int) or cfg.report.last_epochs < 1:
        raise RineError(f"report.last_epochs={cfg.report.last_epochs} is invalid; average at least 1 epoch")


def summarize(history: list[dict[str, float]], last_epochs: int, n_sources: int) -> dict:
    """The reported figures: the mean of the last `last_epochs` held-out epochs, and the final epoch."""
    tail = history[-last_epochs:]

    def mean(key: str) -> float:
        return sum(h[key] for h in tail) / len(tail)

    sources = [f"x{i + 1}" for i in range(n_sources)]
    final = history[-1]
    per_class_keys = sorted((k for k in final if k.startswith("val/redundancy_bits_class")),
                            key=lambda k: int(k.rpartition("class")[2]))
    per_class = [mean(k) for k in per_class_keys]
    return {
        # null, never NaN, for a class absent from the held-out split
        "per_class_redundancy_bits": [v if math.isfinite(v) else None for v in per_class],
        "redundancy_bits": mean("val/redundancy_bits"),
        "redundancy_bits_final": final["val/redundancy_bits"],
        "usable_info_bits": [mean(f"val/usable_info_bits_{s}") for s in sources],
        "usable_info_bits_final": [final[f"val/usable_info_bits_{s}"] for s in sources],
        "distance": mean("val/distance"),
        "distance_final": final["val/distance"],
        "accuracy": [mean(f"val/acc_{s}") for s in sources],
        "reduction": f"mean of the last {len(tail)} epochs of the held-out curve",
        "curve": {
            "redundancy_bits": [h["val/redundancy_bits"] for h in history],
            "distance": [h["val/distance"] for h in history],
            "beta": [h["beta"] for h in history],
        },
    }


def constraint_check(distance: float, n_classes: int, cfg: DictConfig) -> dict:
    """Whether the decoders agree enough for I∩ to be a redundancy (the constraint D = 0).

    The test is on the mean total variation distance between decoders' predictions,
    ½ · L1 (undoing the /K of normalize=classes), so the threshold reads the same for any K.
    """
    per_sample_l1 = distance * n_classes if cfg.distance.normalize == "classes" else distance
    tv = per_sample_l1 / 2
    threshold = cfg.distance.get("warn_above", 0.05)
    warning = None
    if tv > threshold:
        warning = (
            f"the decoders still disagree (mean total variation {tv:.3f} > distance.warn_above={threshold:g}), "
            "so I∩ is not yet a redundancy; raise beta or trainer.max_epochs"
        )
    return {"disagreement_tv": tv, "constraint_met": warning is None, "warning": warning}


def _build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    loggers = []
    for name, logger_cfg in (cfg.logger or {}).items():
        if "Wandb" in str(logger_cfg.get("_target_", "")):
            # Never reach for the network unless the user chose a mode (e.g. WANDB_MODE=online).
            os.environ.setdefault("WANDB_MODE", "offline")
        loggers.append(build(logger_cfg, save_dir=str(run_dir)))
    return loggers


def _finish_loggers(loggers: list) -> None:
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            import wandb

            wandb.finish()  # each multirun job gets its own W&B run


def _train(cfg: DictConfig, task, run_dir: Path, resume_from: Path | None = None) -> dict:
    if cfg.model.get("threads"):
        torch.set_num_threads(cfg.model.threads)
    pl.seed_everything(cfg.seed, verbose=False)
    data = task.setup(cfg.seed)
    if data.views is not None:  # image tasks: the sources are cut from raw images per batch
        shapes = data.views.shapes
    else:
        shapes = [tuple(s.shape[1:]) for s in data.train.sources]
    decoders = [build(cfg.model.decoder, input_shape=shape, n_classes=data.n_classes) for shape in shapes]
    module = RedundancyEstimator(
        decoders,
        h_y_bits=data.h_y_bits,
        optimizer=build(cfg.model.optimizer),
        lr_decay=cfg.model.lr_decay,
        distance_normalization=cfg.distance.normalize,
        distance_pairs=cfg.distance.get("pairs", "all"),
        views=data.views,
    )
    callbacks = [BetaSchedule(cfg.beta, cfg.gamma, cfg.beta_schedule)]
    if cfg.trainer.get("enable_checkpointing", True):
        callbacks.append(
            pl.callbacks.ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", enable_version_counter=False)
        )
    # Lightning's CSV logger starts its file afresh: keep the epochs logged before a kill.
    csv_path = run_dir / "csv" / "metrics.csv"
    earlier_log = pd.read_csv(csv_path) if resume_from is not None and csv_path.is_file() else None
    loggers = _build_loggers(cfg, run_dir)
    trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(run_dir))
    if data.views is not None:
        # Images are decoded once and kept on the training device: batches are cut there.
        device = trainer.strategy.root_device
        data.train, data.heldout = data.train.to(device), data.heldout.to(device)
    shard = {"rank": trainer.global_rank, "world_size": trainer.world_size}  # DDP: this process's share
    try:
        trainer.fit(
            module,
            train_dataloaders=TensorBatches(
                data.train, cfg.model.batch_size, shuffle=True, seed=cfg.seed,
                current_epoch=lambda: trainer.current_epoch, **shard,
            ),
            val_dataloaders=TensorBatches(data.heldout, cfg.model.eval_batch_size, shuffle=False, **shard),
            ckpt_path=resume_from,
        )
    finally:
        _finish_loggers(loggers)
    if earlier_log is not None and csv_path.is_file() and trainer.is_global_zero:
        later = pd.read_csv(csv_path)
        merged = pd.concat([earlier_log[earlier_log["epoch"] < later["epoch"].min()], later], ignore_index=True)
        tmp = csv_path.with_name(".metrics.csv.tmp")
        merged.to_csv(tmp, index=False)
        os.replace(tmp, csv_path)
    if len(module.history) < cfg.trainer.max_epochs:
        raise RineError(f"training stopped after {len(module.history)} of {cfg.trainer.max_epochs} epochs")
    return outcome_of(module.history, data, cfg)


def outcome_of(history: list[dict], data, cfg: DictConfig) -> dict:
    """What results.json reports of a finished training, from its per-epoch history."""
    n_sources = len(data.train.sources) if data.views is None else len(data.views.shapes)
    summary = summarize(history, cfg.report.last_epochs, n_sources)
    return {
        **summary,
        "h_y_bits": data.h_y_bits,
        "h_y_basis": data.h_y_basis,
        "reference": data.reference,
        "n_sources": n_sources,
        "n_classes": data.n_classes,
        "class_names": data.class_names,
        "n_train": len(data.train),
        "n_heldout": len(data.heldout),
        "epochs": len(history),
        **constraint_check(summary["distance"], data.n_classes, cfg),
    }


def previous_attempt(cfg: DictConfig, run_dir: str | Path) -> tuple[str | None, Path | None]:
    """What run_dir holds for exactly this config: (status, checkpoint to resume from).

    status is None when the folder holds nothing of this config. A checkpoint is offered
    only for an attempt that was killed or interrupted (status running/interrupted); a
    run that failed with an error starts afresh.
    """
    run_dir = Path(run_dir)
    try:
        status = json.loads((run_dir / RESULTS_FILE).read_text()).get("status")
        same_config = (run_dir / "config.yaml").read_text() == OmegaConf.to_yaml(cfg)
    except (OSError, ValueError):
        return None, None
    if not same_config:
        return None, None
    checkpoint = run_dir / CHECKPOINT
    resumable = status in ("running", "interrupted") and checkpoint.is_file()
    return status, checkpoint if resumable else None


def is_ddp_follower() -> bool:
    """Whether this process is one of the DDP ranks > 0 that Lightning started beside rank 0.

    Lightning re-runs train.py for them with LOCAL_RANK (and NODE_RANK) set; they train
    their share and leave every file to rank 0.
    """
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def _follow(cfg: DictConfig, run_dir: Path) -> dict:
    """A DDP rank > 0: train beside rank 0, from the checkpoint rank 0 chose, writing nothing."""
    validate_config(cfg)
    try:
        record = json.loads((run_dir / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        record = {}
    if record.get("status") != "running":
        raise RineError(f"this DDP process found no run begun by rank 0 in {run_dir}; start train.py without LOCAL_RANK set")
    resume_from = record.get("resume_from")
    outcome = _train(cfg, build(cfg.task), run_dir, Path(resume_from) if resume_from else None)
    return {**record, **outcome}


def check(cfg: DictConfig, run_dir: str | Path):
    """Everything that can be checked before a run writes anything: the complete results
    of this config in run_dir (nothing to do), or (task, checkpoint to resume from).
    Raises RineError for bad settings or task inputs (e.g. a pmf file).
    """
    validate_config(cfg)
    run_dir = Path(run_dir)
    status, resume_from = previous_attempt(cfg, run_dir)
    if status == "complete":
        return {**json.loads((run_dir / RESULTS_FILE).read_text()), "skipped": True}
    return build(cfg.task), resume_from


def begin(cfg: DictConfig, run_dir: str | Path, checked=None):
    """`check` (or its result, `checked`), then either the complete results (nothing to do)
    or (task, base record, checkpoint to resume from) with results.json saying running.
    """
    checked = check(cfg, run_dir) if checked is None else checked
    if isinstance(checked, dict):
        return checked
    task, resume_from = checked
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    base = {
        "task": task.name,
        "mode": cfg.get("mode", "estimate"),
        "beta": cfg.beta,
        "beta_schedule": cfg.beta_schedule,
        "gamma": cfg.gamma,
        "seed": cfg.seed,
        "width": cfg.get("width"),
        "pmf_file": getattr(task, "pmf_file", None),
        "data_file": getattr(task, "data_file", None),
        "max_epochs": cfg.trainer.max_epochs,
        "distance_normalization": cfg.distance.normalize,
        "distance_pairs": cfg.distance.get("pairs", "all"),
        "run_dir": str(run_dir),
        # Read by the other DDP processes, so that every rank resumes from the same place.
        "resume_from": str(resume_from) if resume_from else None,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    # A run that dies says so; one killed outright leaves "running", never "complete".
    write_json_atomic(run_dir / RESULTS_FILE, {"status": "running", **base})
    OmegaConf.save(cfg, run_dir / "config.yaml")
    return task, base, resume_from


def finish(base: dict, start: float, outcome: dict | None = None, error: BaseException | None = None) -> dict:
    """Write the final results.json of a run begun with `begin`: complete, or why not."""
    results_path = Path(base["run_dir"]) / RESULTS_FILE
    if error is not None:
        # Ctrl-C or a kill signal can be resumed; an error in the run starts afresh next time.
        interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
        results = {"status": "interrupted" if interrupted else "failed", **base,
                   "error": f"{type(error).__name__}: {error}", "wall_seconds": time.perf_counter() - start}
    else:
        results = {"status": "complete", **base, **outcome, "wall_seconds": time.perf_counter() - start}
    write_json_atomic(results_path, results)
    return results


def run(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train one estimate and write `run_dir/results.json`; returns the results.

    Re-running the same config in the same run_dir is safe and cheap: a complete run is
    not trained again (its results come back with `skipped: True`), and a run that was
    killed resumes from its last epoch's checkpoint, β and lr schedules included.
    """
    if is_ddp_follower():
        return _follow(cfg, Path(run_dir))
    started = begin(cfg, run_dir)
    if isinstance(started, dict):
        return started
    task, base, resume_from = started
    start = time.perf_counter()
    try:
        if cfg.get("mode", "estimate") == "pid":
            from rine.pid import train_pid

            # Several trainings in one run dir: a killed pid run starts afresh.
            outcome = train_pid(cfg, task, Path(run_dir), _train)
        else:
            outcome = _train(cfg, task, Path(run_dir), resume_from)
    except BaseException as error:
        finish(base, start, error=error)
        raise
    if resume_from is not None:
        outcome = {**outcome, "resumed": True}
    return finish(base, start, outcome)


def print_report(results: dict) -> None:
    """What train.py prints of a run: the summary line, and the constraint warning on stderr."""
    print(format_summary(results), flush=True)
    if results.get("warning"):
        print(f"warning: {results['warning']}", file=sys.stderr, flush=True)


def format_summary(results: dict) -> str:
    """One line: task, β, the estimate, the exact value when known, D, and where it was written.

    mode=pid adds a second line with the atoms.
    """
    line = f"{results['task']}  beta={results['beta']:g}  I∩ = {results['redundancy_bits']:.2f} bits"
    truth = (results.get("reference") or {}).get("true_redundancy")
    if truth:
        low, high = truth
        exact = f"{low:.2f}" if abs(high - low) < 5e-3 else f"{low:.2f}–{high:.2f}"
        line += f"  (exact {exact})"
    if results.get("distance") is not None:
        line += f"  D = {results['distance']:.3f}"  # the agreement reached, beside every redundancy
    done = "  (already complete, not re-trained)" if results.get("skipped") else ""
    line = f"{line}  -> {results['run_dir']}{done}"
    if results.get("pid"):
        from rine.pid import format_pid

        line += "\n" + format_pid(results["pid"])
    return line
