"""A python that has already imported the heavy third-party libraries (torch, Lightning,
Hydra, pandas, matplotlib) and forks a fresh child for each `python <script> <args>` the tests
run, so that a command costs its own work and not ~5 s of imports.

The child is a new process running the script as `python script args` would: its own argv,
working folder, environment, stdin (/dev/null), stdout and stderr (files), `__main__` module
with the script's absolute path as __file__, sys.path[0] the script's folder and then the
PYTHONPATH of its environment, and the interpreter's own exit (status, traceback, atexit).
Nothing of rine is imported before the fork, so the script imports the project exactly as a
cold process does; only the third-party modules below are already in sys.modules.

Protocol (one JSON object a line): the tests write {"argv", "cwd", "env", "stdout", "stderr"};
the server answers {"pid"} when the child starts and {"returncode"} (as subprocess gives it:
negative for a signal) and {"cpu_s"} (its CPU time, with its own children's) when it ends. Served one command at a time.
"""

from __future__ import annotations

import json
import os
import sys

PRELOAD = ["numpy", "scipy", "pandas", "torch", "torch.optim", "torch.utils.data", "lightning.pytorch",
           "hydra", "hydra.main", "hydra.utils", "omegaconf", "matplotlib", "matplotlib.figure",
           "matplotlib.backends.backend_agg", "sklearn.preprocessing"]


def preload() -> None:
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except ImportError:
                pass


def serve():
    """Answer requests until stdin closes (returns None); in a child, return its request."""
    base_path = [p for p in sys.path[1:] if p not in os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    requests, replies = sys.stdin, sys.stdout
    for line in requests:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            return request, base_path
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status, usage = os.wait4(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status),
                                  "cpu_s": usage.ru_utime + usage.ru_stime, "sys_s": usage.ru_stime}) + "\n")
        replies.flush()
    return None


def become(request: dict, base_path: list[str]) -> None:
    """In the child: set up the process as `python <argv>` would, then run the script."""
    import types
    from importlib.machinery import SourceFileLoader

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                           (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, mode, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    argv = request["argv"]
    script = os.path.abspath(argv[0])
    sys.argv = list(argv)
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.path.dirname(script), *[os.path.abspath(p) for p in extra], *base_path]
    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__loader__ = SourceFileLoader("__main__", script)
    main.__spec__ = None
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec")
    exec(code, main.__dict__)  # an exception or sys.exit ends the child as it ends a script


if __name__ == "__main__":
    preload()
    import gc
    gc.collect()
    gc.freeze()
    child = serve()
    if child is not None:
        become(*child)
