"""Every command the READMEs show runs, so that a documented command cannot break unnoticed.

The ```bash blocks of README.md, outputs/README.md and scripts/README.md are split into
commands (`\\` continuations joined, a trailing `# comment` kept for the rules below), and every
```python block is a program. A new block is picked up by itself:

- fast: every command is one this file knows how to check (`python train.py ...`,
  `python scripts/<name>.py ...`, `make <target>`); every train.py command composes and passes
  rine.config.validate_config (a sweep: its first point); every make target is one the Makefile
  lists in `make help`; every python block compiles.
- slow: each bash block runs command by command, in order (each a fresh python process, forked
  by tests/zygote.py with the third-party imports done), in a throw-away copy of the
  repository's entry points (train.py, scripts/, configs/), so nothing lands in outputs/, with
  the tiny settings below appended (later values win, in Hydra and argparse alike), the files
  in USER_FILES where the commands name them, and a tiny CIFAR-10 as $RINE_DATA. `make`
  targets are checked with `make -n` (they install a virtualenv first). Commands whose
  comment names a need listed in NOT_RUN are composed but not run. Each python block runs as
  written; when a ```text block follows it directly, that is what it prints: the same numbers,
  to 0.05.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import run_warm

ROOT = Path(__file__).resolve().parent.parent
READMES = [ROOT / "README.md", ROOT / "outputs" / "README.md", ROOT / "scripts" / "README.md"]

# A command whose comment names one of these is composed (fast test) but not run, because:
NOT_RUN = {
    "needs SLURM": "no sbatch here; tests/test_cli.py runs the same launcher code with submitit_local",
    "needs GPUs": "trainer=ddp on GPUs; tests/test_ddp.py runs it with 2 CPU processes",
}
# Appended to every train.py command: one epoch, averaged over that one epoch, and no curves.png
# (~0.4 s a run; tests/test_curves.py draws it, and a drawing failure is a warning, never a failed run).
TINY_TRAIN = ["trainer.max_epochs=1", "report.last_epochs=1", "report.curves=false"]
# Appended where a command's arguments match: smaller sweeps and data (in a sweep, too, a later
# value of a key replaces an earlier one).
TINY_WHERE = [
    (r"experiment=(table1|table6|figure3)\b", ["seed=0"]),
    (r"experiment=digits_crop_sweep\b", ["width=2,4", "beta=50", "seed=0"]),
    (r"experiment=mnist_crop\b", ["width=14", "beta=50", "seed=0"]),
    (r"experiment=figure1_left\b", ["width=16", "beta=50", "seed=0"]),
    (r"experiment=figure1_right\b", ["seed=0"]),
    (r"\bseed=\d+,", ["seed=0"]),
    (r"task=mnist_embedded\b", ["task.n_samples=500"]),
    (r"hydra/launcher=joblib\b", ["task=unq,and", "beta=0"]),  # a process per run
]
TINY_SCRIPTS = {
    "scripts/bench_canonical.py": ["--seeds", "1", *TINY_TRAIN],
    "scripts/trust_cases.py": ["--seeds", "1", *TINY_TRAIN],
    "scripts/bench_accuracy.py": ["--tasks", "rdnxor", "--dims", "16", "--ns", "300", "--epochs", "1"],
    "scripts/bench_cifar.py": ["--batches", "1", "--warmup", "1", "model.batch_size=16", "model.eval_batch_size=16"],
}


def _user_files(folder: Path) -> None:
    """The files the commands name, as a user would have them."""
    (folder / "my_pmf.csv").write_text("x1,x2,y,p\n0,0,0,1/4\n0,1,0,1/4\n1,0,0,1/4\n1,1,1,1/4\n")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    a, b = y + 0.3 * rng.standard_normal((2, 300))
    np.savez(folder / "my.npz", x1=np.stack([a, rng.standard_normal(300)], 1), x2=b, y=y)
    rows = "".join(f"{a[i]:.3f},{rng.standard_normal():.3f},{b[i]:.3f},{y[i]}\n" for i in range(300))
    (folder / "my.csv").write_text("x1_a,x1_b,x2,y\n" + rows)


USER_FILES = ["my_pmf.csv", "my.npz", "my.csv"]


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    text: str
    section: str  # the heading it stands under
    output: str | None = None  # python: the ```text block right after it, what it prints

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def name(self) -> str:  # a test id that survives edits above the block
        return f"{self.path.relative_to(ROOT)}#{self.section}"


@dataclass(frozen=True)
class Command:
    block: Block
    line: int
    argv: tuple[str, ...]
    comment: str

    @property
    def where(self) -> str:
        return f"{self.block.path.relative_to(ROOT)}:{self.line}"


FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)


def blocks(language: str) -> list[Block]:
    found = []
    for path in READMES:
        if not path.is_file():
            continue
        text = path.read_text()
        matches = list(FENCE.finditer(text))
        for i, match in enumerate(matches):
            if match.group(1) != language:
                continue
            output = None
            following = matches[i + 1] if i + 1 < len(matches) else None
            if following is not None and following.group(1) == "text" and not text[match.end():following.start()].strip():
                output = following.group(2)
            headings = re.findall(r"^#+ (.+)$", text[:match.start()], re.M)
            found.append(Block(path, text.count("\n", 0, match.start()) + 2, language, match.group(2),
                               headings[-1] if headings else "", output))
    return found


def commands(block: Block) -> list[Command]:
    found, pending, start = [], "", 0
    for offset, line in enumerate(block.text.splitlines()):
        if not pending:
            start = block.line + offset
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        code, comment = split_comment(pending)
        words = shlex.split(code)
        if words:
            found.append(Command(block, start, tuple(words), comment))
        pending = ""
    return found


def split_comment(line: str) -> tuple[str, str]:
    """'cmd args  # why' -> ('cmd args', 'why'): the first # after whitespace, outside quotes."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1:].strip()
    return line, ""


def all_commands() -> list[Command]:
    return [c for b in blocks("bash") for c in commands(b)]


def make_targets() -> list[str]:
    return re.findall(r"^([a-z][a-z-]*):.*## ", (ROOT / "Makefile").read_text(), re.M)


def first_point(overrides: list[str]) -> list[str]:
    """A sweep's first point: every sweep override (a,b or range(...)) at its first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    point = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            value = next(iter(override.sweep_string_iterator()))
            point.append(f"{override.get_key_element()}={value}")
        else:
            point.append(override.input_line)
    return point


def not_run(command: Command) -> str | None:
    return next((why for need, why in NOT_RUN.items() if need in command.comment), None)


# ---------------------------------------------------------------- fast


def test_the_readmes_have_commands_and_programs():
    assert len(all_commands()) >= 20 and blocks("python")


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: f"{c.block.name}:{' '.join(c.argv[:3])}")
def test_every_command_is_one_this_file_can_check(command):
    program = command.argv[0]
    assert program in ("python", "make"), f"{command.where}: teach tests/test_readme.py to run {program!r}"
    if program == "make":
        assert command.argv[1] in make_targets(), f"{command.where}: no make target {command.argv[1]!r}"
        return
    script = command.argv[1]
    assert script == "train.py" or re.fullmatch(r"scripts/\w+\.py", script), command.where
    assert (ROOT / script).is_file(), f"{command.where}: no {script}"
    if script == "train.py":
        from rine.config import compose_config, validate_config

        overrides = [a for a in command.argv[2:] if a not in ("-m", "--multirun")]
        cfg = compose_config(first_point(overrides), return_hydra_config=True)
        validate_config(cfg)


@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.name)
def test_every_python_block_compiles(block):
    compile(block.text, block.where, "exec")


def test_every_need_that_stops_a_command_is_used():
    # NOT_RUN is not a place to hide commands: each entry must mark some documented command.
    comments = " ".join(c.comment for c in all_commands())
    assert all(need in comments for need in NOT_RUN), [n for n in NOT_RUN if n not in comments]


# ---------------------------------------------------------------- slow


@pytest.fixture
def sandbox(tmp_path, tiny_cifar):
    """A folder that looks like the repository to a user's commands, and the environment to run them in."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "train.py", root)
    shutil.copytree(ROOT / "scripts", root / "scripts")
    (root / "configs").symlink_to(ROOT / "configs")
    _user_files(root)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "RINE_DATA": str(tiny_cifar),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return root, env


def tiny(argv: tuple[str, ...]) -> list[str]:
    script, args = argv[1], list(argv[2:])
    if script == "train.py":
        joined = " ".join(args)
        return [sys.executable, script, *args, *TINY_TRAIN,
                *[x for pattern, extra in TINY_WHERE if re.search(pattern, joined) for x in extra]]
    # A script's flags first, then its config overrides (key=value), each group with ours last:
    # argparse takes the positional overrides only as one run.
    def overrides(words: list[str]) -> list[str]:
        return [w for w in words if "=" in w and not w.startswith("-")]

    extra = TINY_SCRIPTS.get(script, [])
    flags = [w for w in args if w not in overrides(args)] + [w for w in extra if w not in overrides(extra)]
    return [sys.executable, script, *flags, *overrides(args), *overrides(extra)]


def run_command(command: Command, root: Path, env: dict) -> None:
    if command.argv[0] == "make":
        argv = ["make", "-n", *command.argv[1:]]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    else:
        argv = tiny(command.argv)
        proc = run_warm(*argv[1:], cwd=root, full_env=env, timeout=900)  # a fresh `python <argv>` process
    assert proc.returncode == 0, (f"{command.where}: {' '.join(command.argv)}\n  ran as: {' '.join(argv)}\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks("bash"), ids=lambda b: b.name)
def test_every_bash_block_runs(block, sandbox):
    root, env = sandbox
    ran = 0
    for command in commands(block):
        if not_run(command) is None:
            run_command(command, root, env)
            ran += 1
    if not ran:
        pytest.skip(f"{block.where}: " + "; ".join(sorted({not_run(c) for c in commands(block)})))


NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.name)
def test_every_python_block_runs_and_prints_what_the_readme_shows(block, sandbox):
    root, env = sandbox
    (root / "block.py").write_text(block.text)
    proc = run_warm("block.py", cwd=root, full_env=env, timeout=900)  # a fresh `python block.py` process
    assert proc.returncode == 0, f"{block.where}\n{proc.stderr[-3000:]}"
    if block.output is not None:
        shown, printed = NUMBER.findall(block.output), NUMBER.findall(proc.stdout)
        assert len(shown) == len(printed), f"{block.where}: the README shows\n{block.output}\nit prints\n{proc.stdout}"
        assert [float(p) for p in printed] == pytest.approx([float(s) for s in shown], abs=0.05), (
            f"{block.where}: the README shows\n{block.output}\nit prints\n{proc.stdout}")
