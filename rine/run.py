"""One RINE run from a composed config: build, train, and write results.json atomically.

train.py calls `run` inside Hydra; scripts and tests call it directly with a config
composed by `compose_config`, so every entry point trains through the same code.
"""

from __future__ import annotations

import hashlib
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

from rine.data import TensorBatches, check_splits
from rine.errors import RineError
from rine.estimator import (
    BETA_SCHEDULES,
    DISTANCE_NORMALIZATIONS,
    DISTANCE_PAIRS,
    BetaSchedule,
    ConstraintControl,
    RedundancyEstimator,
)

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
    precision = str(cfg.trainer.get("precision", "32"))
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
            and str(cfg.model.optimizer.get("_target_", "")).rsplit(".", 1)[-1] == "SGD"):
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


def summarize(history: list[dict[str, float]], last_epochs: int, n_sources: int) -> dict:
    """The reported figures: the mean of the last `last_epochs` held-out epochs, and the final epoch."""
    tail = history[-last_epochs:]

    def mean(key: str) -> float | None:
        values = [h[key] for h in tail if h.get(key) is not None]
        return sum(values) / len(values) if values else None

    sources = [f"x{i + 1}" for i in range(n_sources)]
    final = history[-1]
    per_class_keys = sorted((k for k in final if k.startswith("val/redundancy_bits_class")),
                            key=lambda k: int(k.rpartition("class")[2]))
    per_class = [mean(k) for k in per_class_keys]
    return {
        # null, never NaN, for a class absent from the held-out split
        "per_class_redundancy_bits": [v if v is not None and math.isfinite(v) else None for v in per_class],
        "redundancy_bits": mean("val/redundancy_bits"),
        "redundancy_bits_final": final["val/redundancy_bits"],
        "redundancy_se_bits": mean("val/redundancy_se_bits"),
        "usable_info_bits": [mean(f"val/usable_info_bits_{s}") for s in sources],
        "usable_info_bits_final": [final[f"val/usable_info_bits_{s}"] for s in sources],
        "usable_info_se_bits": [mean(f"val/usable_info_se_bits_{s}") for s in sources],
        "disagreement_tv": mean("val/disagreement_tv"),
        "disagreement_tv_final": final["val/disagreement_tv"],
        "disagreement_tv_train": mean("train/disagreement_tv"),
        "beta_final": final["beta"],
        "accuracy": [mean(f"val/acc_{s}") for s in sources],
        "reduction": f"mean of the last {len(tail)} epochs of the held-out curve",
        "curve": {
            "redundancy_bits": [h["val/redundancy_bits"] for h in history],
            "disagreement_tv": [h["val/disagreement_tv"] for h in history],
            "beta": [h["beta"] for h in history],
        },
    }


def constraint_check(summary: dict, cfg: DictConfig) -> dict:
    """Whether the decoders agree enough for I∩ to be a redundancy (the constraint D = 0).

    The test is on the held-out mean total variation between the decoders' predictions
    (the same scale for any K, whatever the penalty's form). β = 0 has no agreement term:
    the figure is then the decoders' mean usable information, and nothing is checked.
    The warning's advice depends on why the decoders still disagree.
    """
    if cfg.beta == 0:
        return {"constraint_met": None, "warning": None}
    tv, threshold = summary["disagreement_tv"], cfg.distance.warn_above
    if tv <= threshold:
        return {"constraint_met": True, "warning": None}
    problem = (f"the decoders still disagree (held-out mean total variation {tv:.3f} > "
               f"distance.warn_above={threshold:g}), so I∩ is not yet a redundancy")
    train_tv = summary.get("disagreement_tv_train")
    if train_tv is not None and train_tv <= threshold:
        advice = (f"they agree on the training split ({train_tv:.3f}) but not on held-out samples: "
                  "use more samples or smaller decoders (model.decoder.hidden)")
    elif cfg.beta_schedule != "constrained":
        advice = ("use the default objective=constrained, which raises β until they agree (it needs an adaptive "
                  "optimizer such as the default model=mlp), or raise beta (with SGD moderately: it diverges at large β)")
    elif summary["beta_final"] >= cfg.beta * cfg.constraint.max_factor * (1 - cfg.gamma**summary["epochs"]) * 0.999:
        advice = (f"β reached its cap ({summary['beta_final']:.3g}): raise constraint.max_factor or beta, "
                  "and trainer.max_epochs")
    else:
        advice = "train longer (trainer.max_epochs) so that the constrained schedule can raise β further"
    return {"constraint_met": False, "warning": f"{problem}; {advice}"}


def bounds_check(outcome: dict, cfg: DictConfig) -> dict:
    """Flag an estimate outside what is physically possible (paper eq. 8 quantities, bits).

    For the true quantities I(Xi;Y) >= 0, I∩ >= 0 and I∩ <= min_i I(Xi;Y); held-out estimates
    may cross these by sampling noise, so each is checked with the tolerance
    max(report.bounds_tolerance_bits, 3 standard errors of its held-out mean). With β > 0 the
    agreeing decoders' own usable information bounds I∩ too; with a known distribution, the
    exact I(Xi;Y) do. Returns {"valid": bool, "invalid_reasons": [str, ...]}.
    """
    floor = cfg.report.bounds_tolerance_bits

    def tolerance(se) -> float:
        return max(floor, 3 * se) if se is not None else floor

    reasons = []
    redundancy, se = outcome["redundancy_bits"], outcome.get("redundancy_se_bits")
    usable = outcome["usable_info_bits"]
    usable_se = outcome.get("usable_info_se_bits") or [None] * len(usable)
    for i, (u, u_se) in enumerate(zip(usable, usable_se)):
        if u < -tolerance(u_se):
            reasons.append(f"usable information of x{i + 1} is {u:.3g} bits, below 0 by more than {tolerance(u_se):.3g}")
    if redundancy < -tolerance(se):
        reasons.append(f"I∩ = {redundancy:.3g} bits is below 0 by more than {tolerance(se):.3g}")
    bounds = []
    if cfg.beta > 0 and outcome.get("constraint_met"):
        # Agreeing decoders predict alike, so their CEs agree too; a gap means I∩ is not a redundancy.
        bounds.append(("the least of the decoders' own usable information", min(usable)))
    mi_sources = (outcome.get("reference") or {}).get("mi_sources")
    if mi_sources:
        bounds.append(("min_i I(Xi;Y) of the distribution", min(mi_sources)))
        for i, (u, mi, u_se) in enumerate(zip(usable, mi_sources, usable_se)):
            if u > mi + tolerance(u_se):
                reasons.append(f"usable information of x{i + 1} ({u:.3g} bits) exceeds the exact "
                               f"I(X{i + 1};Y) = {mi:.3g} by more than {tolerance(u_se):.3g}")
    for name, bound in bounds:
        if redundancy > bound + tolerance(se):
            reasons.append(f"I∩ = {redundancy:.3g} bits exceeds {name} ({bound:.3g}) by more than {tolerance(se):.3g}")
    return {"valid": not reasons, "invalid_reasons": reasons}


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
    check_splits(data)
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
        distance_pairs=cfg.distance.pairs,
        distance_smoothing=cfg.distance.smoothing,
        views=data.views,
        batch_norm_split=data.train if cfg.model.get("precise_batch_norm") else None,
        eval_batch_size=cfg.model.eval_batch_size,
    )
    callbacks = [BetaSchedule(cfg.beta, cfg.gamma, cfg.beta_schedule, constraint_control(cfg))]
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
    outcome = {
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
    }
    outcome.update(constraint_check(outcome, cfg))
    outcome.update(bounds_check(outcome, cfg))
    return outcome


def data_fingerprint(task) -> str | None:
    """sha256 of the task's input files (in order), or None for a task that reads none.

    A complete run is reused only for the same config and the same data: an edited pmf or
    .npz at the same path must train again.
    """
    files = list(getattr(task, "source_files", []) or [])
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(Path(path).name).encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def previous_attempt(cfg: DictConfig, run_dir: str | Path, fingerprint: str | None = None
                     ) -> tuple[str | None, Path | None]:
    """What run_dir holds for exactly this config and data: (status, checkpoint to resume from).

    status is None when the folder holds nothing of this config and data (`fingerprint`,
    see data_fingerprint). A checkpoint is offered only for an attempt that was killed or
    interrupted (status running/interrupted); a run that failed with an error starts afresh.
    """
    run_dir = Path(run_dir)
    try:
        recorded = json.loads((run_dir / RESULTS_FILE).read_text())
        status = recorded.get("status")
        same_config = (run_dir / "config.yaml").read_text() == OmegaConf.to_yaml(cfg)
    except (OSError, ValueError, AttributeError):
        return None, None
    if not same_config or recorded.get("data_sha256") != fingerprint:
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
    task = build(cfg.task)
    status, resume_from = previous_attempt(cfg, run_dir, data_fingerprint(task))
    if status == "complete":
        return {**json.loads((run_dir / RESULTS_FILE).read_text()), "skipped": True}
    return task, resume_from


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
        "mode": cfg.mode,
        "beta": cfg.beta,
        "beta_schedule": cfg.beta_schedule,
        "gamma": cfg.gamma,
        "seed": cfg.seed,
        "width": cfg.get("width"),
        "pmf_file": getattr(task, "pmf_file", None),
        "data_file": getattr(task, "data_file", None),
        "data_sha256": data_fingerprint(task),
        "max_epochs": cfg.trainer.max_epochs,
        "distance_normalization": cfg.distance.normalize,
        "distance_smoothing": cfg.distance.smoothing,
        "distance_pairs": cfg.distance.pairs,
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
        if cfg.mode == "pid":
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
    """What train.py prints of a run: the summary line, then on stderr each warning, naming the run."""
    print(format_summary(results), flush=True)
    for warning in run_warnings(results):
        print(f"warning: {results['run_dir']}: {warning}", file=sys.stderr, flush=True)


def run_warnings(results: dict) -> list[str]:
    """The run's warnings, most serious first: an invalid estimate, disagreeing decoders, untrusted PID atoms."""
    found = []
    if results.get("valid") is False:
        found.append("INVALID ESTIMATE, do not use it: " + "; ".join(results.get("invalid_reasons") or []))
    if results.get("warning"):
        found.append(results["warning"])
    found += (results.get("pid") or {}).get("warnings") or []
    return found


def format_summary(results: dict) -> str:
    """One line: task, β (and what the constrained schedule raised it to), the estimate, the exact
    value when known, the decoders' disagreement (mean total variation), and the run folder.

    mode=pid adds a second line with the atoms.
    """
    beta = f"beta={results['beta']:g}"
    if results.get("beta_schedule") == "constrained" and results.get("beta_final", 0) > results["beta"] * 1.0001:
        beta += f"→{results['beta_final']:.3g}"
    line = f"{results['task']}  {beta}  I∩ = {results['redundancy_bits']:.2f} bits"
    if results.get("valid") is False:
        line += " (INVALID: see warning)"
    truth = (results.get("reference") or {}).get("true_redundancy")
    if truth:
        low, high = truth
        exact = f"{low:.2f}" if abs(high - low) < 5e-3 else f"{low:.2f}–{high:.2f}"
        line += f"  (exact {exact})"
    if results.get("disagreement_tv") is not None:
        line += f"  TV = {results['disagreement_tv']:.3f}"  # the agreement reached, beside every redundancy
    done = "  (already complete, not re-trained)" if results.get("skipped") else ""
    line = f"{line}  -> {results['run_dir']}{done}"
    if results.get("pid"):
        from rine.pid import format_pid

        line += "\n" + format_pid(results["pid"])
    return line
