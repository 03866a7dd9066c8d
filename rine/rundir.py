"""A run folder: where each file is, results.json's schema and its one writer, and what the
folder already holds of a run.

    <run dir>/results.json                  the run's record (RESULTS_SCHEMA), written atomically
    <run dir>/config.yaml                   the composed config it trained with
    <run dir>/csv/metrics.csv               one row per epoch (METRICS_CSV; both engines, same columns)
    <run dir>/curves.png                    its training curves (rine.figures, when it completes)
    <run dir>/checkpoints/last.ckpt         where a killed one-run training resumes
    <run dir>/checkpoints/batched_group.ckpt  where a killed batched group resumes (its first run's folder)
    <run dir>/checkpoints/decoders.ckpt     a batched run's trained decoders (last.ckpt's state_dict format)
    <run dir>/pid/<run>/                    mode=pid's trainings at β = 0

outputs/README.md shows the schema to users; tests/test_rundir.py keeps the two in step.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rine.errors import RineError
from rine.files import write_json_atomic, write_text_atomic

RESULTS_FILE = "results.json"
CONFIG_FILE = "config.yaml"
METRICS_CSV = Path("csv") / "metrics.csv"
CHECKPOINT = Path("checkpoints") / "last.ckpt"  # rewritten at the end of every epoch
LOCK_FILE = ".lock"
GROUP_CHECKPOINT = Path("checkpoints") / "batched_group.ckpt"
# A batched run's trained decoders: {"state_dict" (last.ckpt's format), "epoch", "rine_history"}.
DECODERS_CHECKPOINT = Path("checkpoints") / "decoders.ckpt"

STATUSES = ("running", "complete", "failed", "interrupted")


def _if_set(prefix: str, value) -> str:
    """configs/train.yaml's default run folder names the crop width only when one is set:
    `${rine_if_set:_w,${width}}` is '_w20' for width=20 and '' for width=null."""
    return "" if value is None else f"{prefix}{value}"


# Registered on import; train.py imports this module before Hydra names the run folder.
OmegaConf.register_new_resolver("rine_if_set", _if_set, replace=True)

# Every key results.json may hold, and what it means (bits unless stated).
RESULTS_SCHEMA = {
    # the run: written when it begins
    "status": "running (begun, or killed outright), complete, failed (an error; starts afresh) or interrupted "
              "(Ctrl-C / SIGTERM; resumes)",
    "task": "the task's name",
    "mode": "estimate or pid",
    "beta": "β as configured",
    "beta_schedule": "constrained, annealed or fixed",
    "gamma": "the annealing rate",
    "seed": "the seed of the data, initialisation and batch order",
    "width": "the crop width of an image task (null otherwise)",
    "pmf_file": "task=pmf's distribution (null otherwise)",
    "data_file": "task=arrays's file (null otherwise)",
    "data_sha256": "content hash of the task's input files; a complete run is reused only when it matches",
    "max_epochs": "epochs to train",
    "distance_normalization": "D's scale: tv, classes or none",
    "distance_smoothing": "D's Huber threshold, in units of 1/K (0: plain L1)",
    "distance_pairs": "all or to_mean",
    "run_dir": "the run folder",
    "resume_from": "the checkpoint this attempt resumed from (null: from scratch)",
    "started_at": "UTC start time of this attempt",
    # the estimate: written when it completes
    "redundancy_bits": "I∩ = H(Y) − mean_i CE_i on the held-out split: the mean of the last report.last_epochs epochs "
                       "(early_stopping: see reduction)",
    "redundancy_bits_final": "the same, final epoch",
    "redundancy_se_bits": "standard error of the held-out mean behind redundancy_bits",
    "usable_info_bits": "per source, H(Y) − CE_i of the same decoders (same reduction)",
    "usable_info_bits_final": "the same, final epoch",
    "usable_info_se_bits": "their standard errors",
    "usable_info_bits_train": "the same on the training split (memorising when far above the held-out)",
    "usable_info_bits_inner": "early_stopping only: the same on the inner validation split, at each decoder's chosen "
                              "epoch: its maximum over epochs, so biased upward (the estimate is usable_info_bits)",
    "early_stopping_epochs": "early_stopping only: per source, the epoch its figures are read at (its best on the "
                             "inner validation split)",
    "n_inner_validation": "early_stopping only: training samples held out as the inner validation split",
    "per_class_redundancy_bits": "per class c: H(Y) − the held-out mean, over samples with y = c, of mean_i CE_i "
                                 "(null: no held-out sample of c)",
    "class_names": "the classes, in the order of per_class_redundancy_bits",
    "source_names": "the sources' names, in the order of usable_info_bits (x1, x2, ... unless named, e.g. by "
                    "rine.estimate_redundancy({name: array, ...}))",
    "accuracy": "per source, held-out accuracy of its decoder",
    "disagreement_tv": "the decoders' held-out mean total variation ½‖p_i − p_j‖₁ (same reduction; with "
                       "early_stopping the last epochs'): what the constraint check reads",
    "disagreement_tv_final": "the same, final epoch",
    "disagreement_tv_train": "the same on the training split (during training)",
    "constraint_met": "disagreement_tv <= distance.warn_above (null for β = 0: nothing asked)",
    "warning": "why the constraint is not met and what can help (null when met)",
    "converged": "false when the held-out I∩ still rose by > 0.01 bits over the last third of training; (β = 0) when "
                 "a source memorises; (early_stopping) when read > 0.2 bits below its training split; (a fixed β "
                 "above 100) always: the figure can be far low. Null: under 9 epochs",
    "convergence_warning": "why `converged` is false and what can help (null otherwise)",
    "valid": "false when an estimate lies outside the physical bounds by more than the tolerance",
    "invalid_reasons": "which bound, by how much",
    "beta_final": "β in the last epoch (the constrained schedule may have raised it)",
    "reduction": "the reduction, in words",
    "curve": "per epoch: held-out redundancy_bits, disagreement_tv and beta",
    "h_y_bits": "H(Y)",
    "h_y_basis": "exact (known distribution) or empirical (training labels)",
    "reference": "exact values of a known distribution: h_y, mi_sources, mi_joint, i_wedge, min_mi_sources, "
                 "true_redundancy [low, high], dit's i_gh, i_broja, i_mmi, i_min, i_prec and dit_status; "
                 "task-specific entries (embedding, digit_recognition); null otherwise",
    "n_sources": "number of sources",
    "n_classes": "number of classes K",
    "n_train": "training samples",
    "n_heldout": "held-out samples",
    "epochs": "epochs trained",
    "pid": "mode=pid: redundancy, unique, synergy, joint, usable, se, disagreement_tv, exact, note, warnings, "
           "figure, runs (and early_stopping_epochs of each β = 0 training with early_stopping; warnings include "
           "what those trainings say of themselves)",
    "resumed": "true when this run continued a killed attempt",
    "batched_with": "how many runs trained in one batched computation with it",
    "wall_seconds": "this attempt's wall time",
    "error": "failed or interrupted: the error",
}


def data_fingerprint(task) -> str | None:
    """sha256 of the task's input files (`task.source_files`, in order), or None when it reads none.

    A complete run is reused only for the same config and the same data: an edited pmf or
    .npz at the same path trains again.
    """
    files = list(getattr(task, "source_files", []) or [])
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(Path(path).name.encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_metrics_csv(run_dir: str | Path, history: list[dict]) -> None:
    """The per-epoch history (rows of rine.objective.stage_metrics plus epoch, step, beta, lr) as
    csv/metrics.csv: one writer for both training engines, rewritten whole after every epoch."""
    # The csv module, not pandas (the text pandas' to_csv writes, without its import in every run).
    columns = list(dict.fromkeys(key for row in history for key in row))  # in order of first appearance
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in history:
        writer.writerow([_csv_field(row.get(column)) for column in columns])
    path = Path(run_dir) / METRICS_CSV
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text.getvalue())


def _csv_field(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def read_results(run_dir: str | Path) -> dict | None:
    """The folder's results.json as a dict, or None when absent or unreadable."""
    try:
        record = json.loads((Path(run_dir) / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


@dataclass
class Attempt:
    """What a run folder holds of exactly this config and data, before anything is written.

    `complete`: its results (nothing to train), or None; then `task` is the built task and
    `resume_from` the checkpoint of a killed or interrupted attempt (None: start afresh).
    """

    task: object = None
    resume_from: Path | None = None
    complete: dict | None = None


def previous_attempt(cfg: DictConfig, run_dir: str | Path, task) -> Attempt:
    """Attempt for this config, data (task.source_files) and folder. A checkpoint is offered only
    for an attempt that was killed or interrupted; one that failed with an error starts afresh."""
    run_dir = Path(run_dir)
    recorded = read_results(run_dir)
    try:
        same_config = recorded is not None and (run_dir / CONFIG_FILE).read_text() == OmegaConf.to_yaml(cfg)
    except OSError:
        same_config = False
    if not same_config or recorded.get("data_sha256") != data_fingerprint(task):
        if recorded is not None and recorded.get("status") in ("interrupted", "complete"):
            # Reusing a folder is allowed (a config or data edited on purpose), but never silently.
            what = f"settings ({_settings_changed(run_dir, cfg)})" if not same_config else "data"
            print(f"note: {run_dir} held a {recorded.get('status')} run (task={recorded.get('task')}, "
                  f"beta={recorded.get('beta')}, seed={recorded.get('seed')}) of other {what}; "
                  "it is replaced by this one", file=sys.stderr, flush=True)
        return Attempt(task)
    status = recorded.get("status")
    if status == "complete":
        return Attempt(task, complete={**recorded, "skipped": True})
    checkpoint = run_dir / CHECKPOINT
    resumable = status in ("running", "interrupted") and checkpoint.is_file() and readable_checkpoint(checkpoint)
    return Attempt(task, checkpoint if resumable else None)


def _settings_changed(run_dir: Path, cfg: DictConfig) -> str:
    """'early_stopping.fraction: 0.1 -> 0.2, ...': what differs from the run recorded in run_dir
    (its config file, read as data), at most three settings named."""
    def flat(node, prefix=""):
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                out.update(flat(value, f"{prefix}{key}."))
            return out
        return {prefix[:-1]: node}

    try:
        before = flat(OmegaConf.to_container(OmegaConf.load(run_dir / CONFIG_FILE)))
    except Exception:  # noqa: BLE001 - an unreadable record: nothing to compare
        return "its config file unreadable"
    after = flat(OmegaConf.to_container(cfg))
    changed = [f"{key}: {before.get(key, '(none)')} -> {after.get(key, '(none)')}"
               for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    return ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "") or "formatting"


def readable_checkpoint(path: Path) -> bool:
    """Whether a checkpoint loads (as data only); one that does not (truncated by a full disk, a
    crafted file) is renamed aside with a warning, and the run starts afresh."""
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception as error:  # noqa: BLE001 - any failure to load means: do not resume from it
        aside = path.with_name(f"{path.name}.unreadable-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        print(f"warning: {path} cannot be read ({type(error).__name__}); set aside as {aside.name}, "
              "the run starts afresh", file=sys.stderr, flush=True)
        return False


def run_settings(cfg: DictConfig, task, run_dir: Path, resume_from: Path | None) -> dict:
    """What results.json records of a run's settings when it begins."""
    return {
        "task": task.name,
        "mode": cfg.mode,
        "beta": cfg.beta,
        "beta_schedule": cfg.beta_schedule,
        "gamma": cfg.gamma,
        "seed": cfg.seed,
        "width": cfg.width,
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


def lock_run_dir(run_dir: Path) -> int:
    """Take the run folder's exclusive lock (flock on <run dir>/.lock) and return its descriptor.

    Two processes training into one folder would interleave metrics.csv and pair one run's
    config.yaml with another's results.json; the second stops with one line naming the holder.
    The lock goes with the process (a killed run leaves none behind). Raises RineError.
    """
    import fcntl

    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise RineError(f"{run_dir} is in use by {holder}; wait for that run to end or choose another folder "
                        "(hydra.run.dir=...; in a sweep, hydra.sweep.subdir naming each job apart)") from None
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} (since {started})".encode(), 0)
    return fd


def unlock_run_dir(fd: int | None) -> None:
    if fd is None:
        return
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    except OSError:
        pass  # already released (e.g. by a worker that finished the run)


@dataclass
class RunRecord:
    """The one writer of a run's results.json (keys: RESULTS_SCHEMA).

    `begin` records the settings with status running (and saves config.yaml), so a run
    killed outright leaves "running", never "complete"; `complete` or `stopped` writes the
    final record once training ends.
    """

    run_dir: Path
    settings: dict
    started: float = field(default_factory=time.perf_counter)
    lock: int | None = None  # the folder's lock, held from begin to the final record

    @classmethod
    def begin(cls, cfg: DictConfig, run_dir: str | Path, task, resume_from: Path | None) -> RunRecord:
        """Lock the folder, record the run as running and save its config. Raises RineError for a
        folder in use or one that cannot be written."""
        run_dir = Path(run_dir)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            record = cls(run_dir, run_settings(cfg, task, run_dir, resume_from), lock=lock_run_dir(run_dir))
            record._write({"status": "running"})
            OmegaConf.save(cfg, run_dir / CONFIG_FILE)
        except OSError as error:
            raise RineError(f"cannot write to {run_dir} ({error.strerror or error}); choose a writable folder "
                            "with space left (hydra.run.dir=... / hydra.sweep.dir=...)") from None
        return record

    def complete(self, outcome: dict) -> dict:
        """Write and return the complete record: the settings and `outcome` (training's figures)."""
        try:
            return self._write({"status": "complete", **outcome, "wall_seconds": time.perf_counter() - self.started})
        finally:
            self.release()

    def stopped(self, error: BaseException) -> dict:
        """Write why training stopped: interrupted (Ctrl-C, SIGTERM, a kill: resumable) or failed."""
        interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
        if interrupted:
            from rine.console import interrupted_by

            signum = interrupted_by()
            reason = f"interrupted by {signal.Signals(signum).name}" if signum else f"interrupted ({type(error).__name__})"
        else:
            reason = f"{type(error).__name__}: {error}"
        try:
            return self._write({"status": "interrupted" if interrupted else "failed",
                                "error": reason,
                                "wall_seconds": time.perf_counter() - self.started})
        finally:
            self.release()

    def release(self) -> None:
        unlock_run_dir(self.lock)
        self.lock = None

    def _write(self, fields: dict) -> dict:
        record = {**self.settings, **fields}
        unknown = set(record) - set(RESULTS_SCHEMA)
        if unknown:  # a programming error: every key is documented in one place
            raise KeyError(f"results.json keys missing from rine.rundir.RESULTS_SCHEMA: {sorted(unknown)}")
        # status first, as users look for it
        write_json_atomic(self.run_dir / RESULTS_FILE, {"status": record.pop("status"), **record})
        return {"status": fields["status"], **record}
