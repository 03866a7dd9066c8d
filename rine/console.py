"""What rine prints besides its own lines: the frameworks are kept quiet on the console."""

from __future__ import annotations

import logging
import warnings


def quiet_framework_output() -> None:
    """Keep the console to our own lines: Lightning's banner and tips stay in train.log only.

    Lightning adds its console handlers when it is first imported, so this runs again after
    that import (rine.training does it); calling it twice is harmless.
    """
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            handler.setLevel(logging.WARNING)
    # Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; nothing for users to do.
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=Warning)
    # Re-running into a run folder (resume, or a run trained afresh) is what rine does on purpose.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


_received: list[int] = []  # the signal that interrupted this process, if any


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
