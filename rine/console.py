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
