import logging
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

# Set before anything imports wandb: tests never reach the network.
os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(1)
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _quiet_lightning():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def train_run(tmp_path):
    """Train through rine.run.run with the given overrides; returns (results, run_dir)."""
    from rine.config import compose_config
    from rine.run import run

    def _run(*overrides: str, name: str = "run"):
        run_dir = tmp_path / name
        return run(compose_config(list(overrides)), run_dir), run_dir

    return _run


@pytest.fixture(scope="session")
def default_unq_run(tmp_path_factory):
    """task=unq at every default setting (β = 15, seed 0, 30 epochs): (results, run_dir).
    Trained once per test process for the tests that read it (test_train, test_trust)."""
    from rine.config import compose_config
    from rine.run import run

    run_dir = tmp_path_factory.mktemp("default_unq") / "run"
    return run(compose_config(["task=unq"]), run_dir), run_dir


@pytest.fixture(autouse=True, scope="session")
def _private_reference_cache(tmp_path_factory):
    """dit results computed by tests go to a throw-away cache, not the user's."""
    os.environ["RINE_CACHE_DIR"] = str(tmp_path_factory.mktemp("rine-cache"))
    yield


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    # The official files are Python 2 pickles of dicts with a flat [N, 3072] uint8 'data'
    # (1024 red, 1024 green, 1024 blue values, row-major) and a 'labels' list.
    batch = {"batch_label": path.name, "data": images.reshape(len(images), -1), "labels": labels,
             "filenames": [f"{i}.png" for i in range(len(labels))]}
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)


@pytest.fixture
def tiny_cifar(tmp_path):
    """data_dir with cifar-10-batches-py/: 5 x 4 training images, 9 test images with no 'truck' (9)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _write_cifar_batch(folder / f"data_batch_{i}", rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8),
                           [(4 * (i - 1) + j) % 10 for j in range(4)])
    _write_cifar_batch(folder / "test_batch", rng.integers(0, 256, (9, 3, 32, 32), dtype=np.uint8), list(range(9)))
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": 4, "num_vis": 3072}, f, protocol=2)
    return tmp_path / "data"


def write_fake_run(root: Path, name: str, overrides: list[str] | None = None, metrics: dict | None = None,
                   raw_results: str | None = None, **results) -> Path:
    """A logged run folder as train.py leaves it, without training: results.json (complete,
    annealed, seed 0 unless given), config.yaml composed from `overrides` (none when None),
    csv/metrics.csv from `metrics` (column -> per-epoch values). raw_results: the file's text as is."""
    import json

    run_dir = root / name
    run_dir.mkdir(parents=True)
    base = {"status": "complete", "beta_schedule": "annealed", "distance_normalization": "classes", "seed": 0}
    (run_dir / "results.json").write_text(raw_results if raw_results is not None else json.dumps({**base, **results}))
    if overrides is not None:
        from omegaconf import OmegaConf

        from rine.config import compose_config

        OmegaConf.save(compose_config(overrides), run_dir / "config.yaml")
    if metrics is not None:
        import pandas as pd

        (run_dir / "csv").mkdir()
        pd.DataFrame(metrics).to_csv(run_dir / "csv" / "metrics.csv", index=False)
    return run_dir


@pytest.fixture(scope="session")
def fake_run():
    """write_fake_run, as a fixture: logged runs for the table and figure scripts."""
    return write_fake_run


ROOT = Path(__file__).resolve().parent.parent


def python_env(**extra: str) -> dict[str, str]:
    """A child python's environment: this checkout's rine first on the path (also in the
    processes Hydra's launchers start), W&B off, one thread per process, plus `extra`."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return env


def run_python(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """python <args> from the repo root, as a user runs it (train.py ..., scripts/...): the
    finished process, with its stdout and stderr as text. env: variables set on top of python_env."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=python_env(**(env or {})), capture_output=True,
                          text=True, timeout=timeout)


def start_python(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """run_python, started and not awaited (to kill it midway)."""
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=python_env(**(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def assert_one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The command-line contract for bad input: exit status 2 and a single `error: ...` line on
    stderr, no traceback anywhere. Returns that line."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


class Zygote:
    """tests/zygote.py, started once per test process: `python <script> <args>` as a child forked
    from a python that has torch, Lightning, Hydra, pandas and matplotlib imported already (each
    command a fresh process, ~5 s of imports less). One child at a time."""

    def __init__(self) -> None:
        import atexit
        import shutil
        import tempfile

        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "zygote.py")], cwd=ROOT, env=python_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pending = b""
        self.folder = Path(tempfile.mkdtemp(prefix="rine-zygote-"))
        atexit.register(shutil.rmtree, self.folder, True)
        atexit.register(self.close)
        self.started = 0
        self.child: WarmProcess | None = None

    def close(self) -> None:
        """End the server (its stdin closes) and wait for it, so that its CPU time is counted."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def reply(self, timeout: float | None) -> dict | None:
        """The server's next answer, or None after `timeout` seconds."""
        import json
        import select
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self.pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"tests/zygote.py ended (status {self.proc.wait()})")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def start(self, argv: list[str], cwd: Path, env: dict[str, str]) -> "WarmProcess":
        import json
        import signal

        if self.child is not None and self.child.returncode is None:  # left running by a failed test
            self.child.send_signal(signal.SIGKILL)
            self.child.wait()
        self.started += 1
        out, err = self.folder / f"{self.started}.out", self.folder / f"{self.started}.err"
        out.touch()
        err.touch()
        request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        self.child = WarmProcess(self, [sys.executable, *argv], self.reply(60)["pid"], out, err)
        return self.child


class WarmProcess:
    """A Zygote child, as subprocess.Popen gives it: pid, poll, wait, send_signal, returncode, and
    stdout / stderr as files to read (complete once it has ended); cpu_s: its CPU seconds."""

    def __init__(self, zygote: Zygote, args: list[str], pid: int, out: Path, err: Path) -> None:
        self.zygote, self.args, self.pid, self.returncode, self.cpu_s = zygote, args, pid, None, None
        self.out, self.err = out, err
        self.stdout, self.stderr = out.open(), err.open()

    def _ended(self, reply: dict) -> int:
        self.returncode, self.cpu_s = reply["returncode"], reply["cpu_s"]
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None and (reply := self.zygote.reply(0)) is not None:
            self._ended(reply)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            reply = self.zygote.reply(timeout)
            if reply is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self._ended(reply)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def finished(self, timeout: float) -> subprocess.CompletedProcess:
        """Wait (SIGKILL after `timeout`, as subprocess.run does) and give what it printed."""
        import signal

        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.wait()
            raise subprocess.TimeoutExpired(self.args, timeout, self.stdout.read(), self.stderr.read()) from None
        done = subprocess.CompletedProcess(self.args, self.returncode, self.stdout.read(), self.stderr.read())
        done.cpu_s = self.cpu_s
        for file in (self.stdout, self.stderr):
            file.close()
        self.out.unlink()
        self.err.unlink()
        return done


_zygote: Zygote | None = None


def _warm_env(env: dict[str, str] | None, full_env: dict[str, str] | None) -> dict[str, str]:
    return full_env if full_env is not None else python_env(**(env or {}))


def _cold() -> bool:
    return os.environ.get("RINE_TESTS_COLD") == "1"


def zygote() -> Zygote:
    global _zygote
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = Zygote()
    return _zygote


def run_warm(*args: str, env: dict[str, str] | None = None, timeout: float = 600, cwd: Path = ROOT,
             full_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """run_python through the Zygote: the same command, as a fresh process with the heavy
    third-party imports done. full_env: the child's whole environment (else python_env + env).
    RINE_TESTS_COLD=1 runs every command as a cold process instead."""
    if _cold():
        return subprocess.run([sys.executable, *args], cwd=cwd, env=_warm_env(env, full_env), capture_output=True,
                              text=True, timeout=timeout)
    return zygote().start(list(args), cwd, _warm_env(env, full_env)).finished(timeout)


def start_warm(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT):
    """start_python through the Zygote (a WarmProcess; a Popen under RINE_TESTS_COLD=1)."""
    if _cold():
        return start_python(*args, env=env)
    return zygote().start(list(args), cwd, _warm_env(env, None))


@pytest.fixture(scope="session")
def script():
    """run_warm, as a fixture (tests about a cold start use run_python)."""
    return run_warm


def pytest_sessionfinish(session):
    # End this process's zygote here (atexit is the fallback): waited for, its CPU time and its
    # children's count towards the test run's, as a cold process's do.
    if _zygote is not None:
        _zygote.close()
