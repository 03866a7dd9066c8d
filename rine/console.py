"""What rine prints besides its own lines: the frameworks are kept quiet on the console."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import NoReturn


def quiet_framework_output() -> None:
    """Keep the console to our own lines: Lightning's banner and tips stay in train.log only.

    Lightning adds its console handlers when it is first imported, so this runs again after
    that import (rine.training does it); calling it twice is harmless.
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            handler.setLevel(logging.WARNING)
    # Lightning's records also propagate to the root logger, whose console handler Hydra's
    # launcher sets to INFO during a sweep: keep them off the console there too.
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler and _quiet_lightning not in handler.filters:
            handler.addFilter(_quiet_lightning)
    # Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; nothing for users to do.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=Warning)
    # Re-running into a run folder (resume, or a run trained afresh) is what rine does on purpose.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def _quiet_lightning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not record.name.startswith("lightning")


_received: list[int] = []  # the signal that interrupted this process, if any
_results_folder: list[tuple[str, str]] = []  # (hydra key, folder) where this command's results go


def results_folder_is(key: str, folder: str) -> None:
    """Remember where this command writes (`hydra.run.dir` or `hydra.sweep.dir`), so that an
    interrupted command can be told how to resume: default folders are named by the time."""
    _results_folder[:] = [(key, str(folder))]


def resume_command(argv: list[str]) -> str:
    """The command that resumes this one: its arguments with the folder it wrote into."""
    import shlex

    if not _results_folder:
        return shlex.join(["python", *argv])
    key, folder = _results_folder[0]
    kept = [a for a in argv[1:] if not a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    return shlex.join(["python", argv[0], *kept, f"{key}={folder}"])


def stop_on_signals() -> None:
    """Turn SIGTERM (what SLURM and `kill` send) into a KeyboardInterrupt, as Ctrl-C (SIGINT) is,
    so that a run records itself as interrupted (resumable) instead of dying silently; the
    signal is remembered for interrupted_by(). Call it in the main thread of a command."""
    import signal

    def interrupt(signum, frame):
        if not _received:
            _received.append(signum)
        raise KeyboardInterrupt

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, interrupt)


def interrupted_by() -> int | None:
    """The signal number that interrupted this process (see stop_on_signals), or None."""
    return _received[0] if _received else None


class EpochLines:
    """One plain line per epoch on stderr, for long runs whose output goes to a log (no terminal):
    'epoch 3/40  I∩ 1.23 bits  TV 0.051  β 12.3  (45 s/epoch, ETA 27 min)'."""

    def __init__(self, epochs: int, label: str = ""):
        import time

        self.epochs, self.label, self.clock = epochs, label, time.perf_counter
        self.start, self.first_epoch = self.clock(), None

    def __call__(self, history: list[dict]) -> None:
        import sys

        row = history[-1]
        if self.first_epoch is None:  # a resumed run starts counting where it resumed
            self.first_epoch = row["epoch"]
        done = row["epoch"] - self.first_epoch + 1
        per_epoch = (self.clock() - self.start) / done
        left = (self.epochs - row["epoch"] - 1) * per_epoch
        figures = f"I∩ {row['val/redundancy_bits']:.3f} bits  TV {row['val/disagreement_tv']:.3f}  β {row['beta']:.3g}"
        print(f"{self.label}epoch {row['epoch'] + 1}/{self.epochs}  {figures}  "
              f"({per_epoch:.0f} s/epoch, ETA {duration(left)})", file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
    """'45 s', '12 min', '2.5 h'."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def fail(message: str) -> NoReturn:
    """The command-line contract for bad input: `error: <message>` on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
