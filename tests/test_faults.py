"""Bad input and faults: one line, exit code 2, nothing lost, nothing executed (issue 11).

BAD_COMMANDS is the table of bad train.py commands re-run for every change: each must exit
2 with exactly one line on stderr (no traceback, no Hydra page) and leave no results.json
claiming success. The other tests cover faults: two processes on one folder, signals, a
truncated checkpoint, mode=pid's resume record, the batched engine's decoders without
BatchNorm or hidden layers, and the Python API's arguments.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_warm

from rine.config import compose_config
from rine.errors import RineError
from rine.run import run, run_many

ROOT = Path(__file__).resolve().parent.parent

# (arguments, the start of the one stderr line)
BAD_COMMANDS = [
    (["seed=-1"], "error: seed=-1 is invalid"),
    (["-m", "seed=-1,0"], "error: seed=-1 is invalid"),
    # Refused when the sweep's data is read, after Hydra made every job's folder: none may stay
    # (a fresh-user review found .hydra/ and train.log left for every job).
    (["-m", "task.n_samples=1000,-5", "trainer.max_epochs=1"], "error: task.n_samples=-5 is invalid"),
    (["-m", "task=pmf", "pmf_file=and,/nonexistent/p.csv", "trainer.max_epochs=1"], "error: pmf file not found"),
    # Switches take true/false only (Python read "maybe" as true); a quoted number is named as text.
    (["report.curves=maybe"], "error: report.curves=maybe is invalid; use true or false"),
    (["-m", "report.curves=true,no"], "error: report.curves=no is invalid; use true or false"),
    (["early_stopping.enabled=1", "beta=0"], "error: early_stopping.enabled=1 is invalid; use true or false"),
    (['beta="5"'], "error: beta='5' is text (it was quoted); write beta=5 without quotes"),
    (["-m", "model.optimizer.lr='0.1'", "seed=0,1"], "error: model.optimizer.lr='0.1' is text"),
    (["report.curves='true'"], "error: report.curves='true' is text (it was quoted); write report.curves=true"),
    (["report.curves=null"], "error: report.curves=null is invalid; use true or false"),
    (["model.optimizer.fused=maybe"], "error: model.optimizer.fused=maybe is invalid; use true or false (or null"),
    # Two jobs of one folder: the second found the first's lock (or, basic launcher, replaced its result).
    (["-m", "seed=0,1", "trainer.max_epochs=1", "hydra.sweep.subdir=${hydra.job.override_dirname}",
      "hydra.job.config.override_dirname.exclude_keys=[seed]"], "error: jobs #0 (seed=0 trainer.max_epochs=1) and #1"),
    (["-m", "task=glob(zz*)"], "error: task=glob(zz*) matches no task"),
    (["task=unq,and"], "error: task=unq,and gives several values, which only a sweep trains: add -m"),  # (Hydra's page)
    # A setting one swept task lacks (Hydra's page and a left folder before); a folder name naming nothing.
    (["-m", "task=unq,digits_crop", "task.n_samples=1000"], "error: unknown setting 'task.n_samples'"),
    (["-m", "beta=0,5", "hydra.sweep.subdir=${nosuch}"], "error: hydra.sweep.dir / hydra.sweep.subdir cannot name"),
    (["-m", "beta=glob(1*)"], "error: beta=glob(1*): glob() chooses among a config group's options"),
    (["-m", "seed=0,1", "hydra.job.name=a,b"], "error: hydra.job.name=a,b: Hydra's own settings take one value"),
    (["model.batch_size=0"], "error: model.batch_size=0 is invalid"),
    (["model.batch_size=1"], "error: model.batch_size=1 is invalid"),
    (["model.batch_size=-5"], "error: model.batch_size=-5 is invalid"),
    (["model.eval_batch_size=0"], "error: model.eval_batch_size=0 is invalid"),
    (["model.optimizer.lr=-1"], "error: model.optimizer.lr=-1 is invalid"),
    # Values torch's optimizer classes refuse: the batched engine, which applies their update
    # without the class, trained on them (a fresh-user review).
    (["+model.optimizer.betas=[1.5,0.99]"], "error: model.optimizer.betas=[1.5, 0.99] is invalid"),
    (["model.optimizer.weight_decay=-1"], "error: model.optimizer.weight_decay=-1 is invalid"),
    (["+model.optimizer.foreach=true"], "error: model.optimizer.fused and foreach cannot both be true"),
    (["model=mlp_paper", "objective=paper", "+model.optimizer.nesterov=true", "+model.optimizer.dampening=0.5"],
     "error: model.optimizer.nesterov=true needs model.optimizer.momentum > 0 and dampening 0"),
    (["model.optimizer._target_=torch.optim.Adamw"], "error: model.optimizer._target_=torch.optim.Adamw cannot be imported"),
    (["-m", "model.optimizer._target_=torch.optim.Adamw", "beta=5,15"],
     "error: model.optimizer._target_=torch.optim.Adamw cannot be imported"),
    (["model.optimizer._target_=torch.optim.LBFGS", "~model.optimizer.fused", "~model.optimizer.weight_decay"],
     "error: torch.optim.LBFGS needs a closure at every step"),
    (["model.optimizer.betas=[0.8,0.99]"], "error: unknown setting 'model.optimizer.betas'"),
    # Other classes are built and stepped once on a dummy parameter: their own checks speak.
    (["model.optimizer._target_=torch.optim.Adagrad", "~model.optimizer.fused", "+model.optimizer.initial_accumulator_value=-1"],
     "error: model.optimizer (torch.optim.Adagrad) refuses its settings: Invalid initial_accumulator_value value: -1"),
    (["model.optimizer._target_=torch.optim.SparseAdam", "~model.optimizer.fused", "~model.optimizer.weight_decay"],
     "error: model.optimizer (torch.optim.SparseAdam) refuses its settings: SparseAdam does not support dense gradients"),
    (["+model.optimizer.differentiable=true"], "error: model.optimizer (torch.optim.AdamW) refuses its settings"),
    (["+model.optimizer.maximize=true"], "error: model.optimizer.maximize=true would ascend the loss"),
    (["model.optimizer._target_=torch.optim.RMSprop"], "error: unknown setting 'model.optimizer.fused'"),
    (["model.decoder.hidden=[0]"], "error: model.decoder.hidden=[0] is invalid"),
    (["model.threads=-1"], "error: model.threads=-1 is invalid"),
    (["gamma=1"], "error: gamma=1 is invalid"),
    (["betaa=3"], "error: unknown setting 'betaa' (did you mean beta?)"),
    (["+betaa=3"], "error: unknown setting 'betaa' (did you mean beta?)"),
    (["task.nme=x"], "error: unknown setting 'task.nme' (did you mean task.name"),
    (["+task.nme=x"], "error: unknown setting 'task.nme' (did you mean task.name"),
    (["data_dir=x"], "error: unknown setting 'data_dir' (did you mean"),
    (["+distance.foo=1"], "error: unknown setting 'distance.foo'"),
    (["pmf_file=/tmp/a=b.csv", "task=pmf"], "error: cannot read the argument 'pmf_file=/tmp/a=b.csv': its value contains '='"),
    (["task=nope"], "error: unknown task 'nope'; choose one of"),
    (["objective=nope"], "error: unknown objective 'nope'; choose one of: constrained, paper"),
    (["model=mlp_paper"], "error: beta_schedule=constrained raises β until the decoders agree"),
    # A task's shortcut given to a task that does not read it would be ignored silently.
    (["task=unq", "width=4"], "error: width= is read only by the image tasks"),
    (["pmf_file=rine/pmfs/and.csv"], "error: pmf_file= is read only by task=pmf; task=rdnxor does not read it"),
    (["task=pmf", "data_file=x.npz", "pmf_file=rine/pmfs/and.csv"], "error: data_file= is read only by task=arrays"),
    # Early stopping reads a β = 0 decoder at its best epoch; a β > 0 I∩ has no such epoch.
    (["early_stopping.enabled=true"], "error: early_stopping applies to beta=0 trainings"),
    (["beta=0", "early_stopping.enabled=yes please"], "error: early_stopping.enabled=yes please is invalid"),
    (["beta=0", "early_stopping.enabled=true", "early_stopping.fraction=1"], "error: early_stopping.fraction=1 is invalid"),
    (["beta=0", "early_stopping.enabled=true", "early_stopping.fraction=0"], "error: early_stopping.fraction=0 is invalid"),
    (["early_stopping.patience=3"], "error: unknown setting 'early_stopping.patience'"),
    (["beta=0", "early_stopping.enabled=true", "early_stopping.fraction=0.99"], "error: early_stopping.fraction=0.99 is invalid"),
    # A group of settings given one value (a fresh user's early_stopping=true) is one line, not a TypeError.
    (["beta=0", "early_stopping=true"], "error: early_stopping=True is invalid: early_stopping is a group of settings"),
    (["report=true"], "error: report=True is invalid: report is a group of settings"),
    (["distance=5"], "error: distance=5 is invalid: distance is a group of settings"),
    (["mode=pid", "beta=0"], "error: mode=pid needs beta > 0"),
    (["task=embedded", "task.n_samples=100", "beta=0", "early_stopping.enabled=true"],
     "error: task embedded: early_stopping.fraction=0.1 of 80 training samples leaves 8 for the inner validation split"),
]


def train_py(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """python train.py <args>, a fresh process (forked by tests/zygote.py, the third-party imports done)."""
    return run_warm("train.py", *args, timeout=timeout, full_env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})


@pytest.mark.slow
@pytest.mark.parametrize("args, message", BAD_COMMANDS, ids=[" ".join(a) for a, _ in BAD_COMMANDS])
def test_bad_command_is_one_line_exit_2_and_writes_no_result(tmp_path, args, message):
    proc = train_py(*args, f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("results.json"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "sweep").exists()  # not even Hydra's folders


def test_valid_settings_compose_and_pass_the_same_checks():
    from rine.config import check_overrides, validate_config

    check_overrides(["beta=5", "+trainer.limit_train_batches=2", "task=pmf", "pmf_file='/tmp/a=b.csv'", "-m", "seed=0,1"])
    check_overrides(["experiment=digits_crop_sweep", "width=2,4"])  # the experiment's sweep picks the task
    check_overrides(["-m", "task=glob(u*)", "beta=0,5"])  # Hydra's glob over a group's options (a traceback before)
    validate_config(compose_config(["model.optimizer.fused=null", "trainer.enable_checkpointing=null"]))
    validate_config(compose_config(["model.decoder.hidden=[]", "model.threads=null", "seed=4294967295"]))


def test_a_second_process_on_a_run_folder_stops_naming_the_holder(tmp_path):
    from rine.rundir import RunRecord

    cfg = compose_config(["trainer.max_epochs=1"])

    class Task:
        name, source_files = "t", []

    holder = RunRecord.begin(cfg, tmp_path, Task(), None)
    proc = train_py("trainer.max_epochs=1", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: {tmp_path} is in use by process {os.getpid()} on {os.uname().nodename} "
                                   f"(since {(tmp_path / '.lock').read_text().split('since ')[1]}; wait for that run "
                                   "to end or choose another folder (hydra.run.dir=...; in a sweep, hydra.sweep.subdir "
                                   "naming each job apart)")
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "running"  # the holder's record
    holder.release()
    assert train_py("trainer.max_epochs=1", f"hydra.run.dir={tmp_path}").returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_interrupts_with_a_message_and_the_run_resumes(tmp_path, signum, code):
    args = ["task=unq", "trainer.max_epochs=30", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
    checkpoint = tmp_path / "checkpoints" / "batched_group.ckpt"  # an MLP run: the batched engine's
    deadline = time.time() + 240
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert stderr.strip().splitlines()[-1].startswith(f"interrupted by {signal.Signals(signum).name}: ")
    assert "Traceback" not in stderr
    # The message gives the command that resumes: its arguments with the folder it wrote into
    # (default folders are named by the time, so "the same command" would start a new one).
    command = shlex.split(stderr.strip().splitlines()[-1].split("resume with: ")[1])
    assert command[:2] == ["python", "train.py"] and command[-1] == f"hydra.run.dir={tmp_path}"
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "interrupted"
    resumed = train_py(*command[2:])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming 1 run(s) from {checkpoint}" in resumed.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "complete" and results["resumed"] is True and results["epochs"] == 30
    assert results["resume_from"] == str(checkpoint)


def test_checkpoints_are_written_atomically_and_an_unreadable_one_is_set_aside(tmp_path, capsys):
    cfg = compose_config(["trainer.max_epochs=2", "report.last_epochs=1", "engine=lightning"])
    first = run(cfg, tmp_path)
    checkpoints = tmp_path / "checkpoints"
    assert [p.name for p in checkpoints.iterdir()] == ["last.ckpt"]  # no temporary file left beside it
    # A full disk truncated it while the run was running: the next attempt must not crash on it.
    record = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**record, "status": "running"}))
    with (checkpoints / "last.ckpt").open("r+b") as f:
        f.truncate(100)
    again = run(cfg, tmp_path)
    assert "cannot be read" in capsys.readouterr().err
    assert again["status"] == "complete" and not again.get("resumed") and again["resume_from"] is None
    assert again["redundancy_bits"] == pytest.approx(first["redundancy_bits"], abs=1e-6)  # trained afresh
    assert sorted(p.name.split("-")[0] for p in checkpoints.iterdir()) == ["last.ckpt", "last.ckpt.unreadable"]


def test_an_unreadable_batched_checkpoint_is_set_aside(tmp_path, capsys):
    from rine.batched import train_group
    from rine.config import build

    cfg = compose_config(["trainer.max_epochs=2"])
    checkpoint = tmp_path / "checkpoints" / "batched_group.ckpt"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"PK\x03\x04 truncated")
    (trained,), resumed = train_group([cfg], [build(cfg.task)], checkpoint, identity=["x"])
    assert not resumed and len(trained[0]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert any(p.name.startswith("batched_group.ckpt.unreadable-") for p in checkpoint.parent.iterdir())


def test_a_killed_pid_run_restarts_and_says_so_truthfully(tmp_path):
    cfg = compose_config(["mode=pid", "trainer.max_epochs=1", "report.last_epochs=1"])
    run(cfg, tmp_path)
    record = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps({**record, "status": "running"}))  # as if killed
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    again = run(cfg, tmp_path)
    assert again["status"] == "complete" and again["resume_from"] is None and "resumed" not in again


@pytest.mark.parametrize("override", ["model.decoder.batch_norm=false", "model.decoder.hidden=[]"])
def test_the_batched_engine_trains_every_mlp_the_one_run_engine_does(tmp_path, override):
    cfg = compose_config(["trainer.max_epochs=2", "report.last_epochs=1", override])
    alone = run(cfg, tmp_path / "alone")
    (together,) = run_many([cfg], [tmp_path / "together"])
    assert together["curve"]["redundancy_bits"] == pytest.approx(alone["curve"]["redundancy_bits"], abs=1e-4)


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path):
    # A path under a file cannot be made (as root, a read-only folder still can: this fault is the same kind).
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(RineError, match=rf"^cannot write to {blocker / 'run'} \(.*\); choose a writable folder"):
        run(compose_config(["trainer.max_epochs=1"]), blocker / "run")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if not os.access(folder, os.W_OK):  # a user who cannot write anywhere they like
            with pytest.raises(RineError, match=rf"^cannot write to {folder / 'run'} "):
                run(compose_config(["trainer.max_epochs=1"]), folder / "run")
    finally:
        folder.chmod(0o700)


API_MISTAKES = [
    (dict(seeds=1.5), "seeds=1.5 is invalid"),
    (dict(seeds=["a"]), "seeds=['a'] is invalid"),
    (dict(seeds=[0, 0]), "repeats a seed"),
    (dict(seeds=0), "seeds=0 is invalid"),
    (dict(epochs=0), "epochs=0 is invalid"),
    (dict(level=1.5), "level=1.5 is invalid"),
    (dict(overrides="beta=3"), "give a list of train.py overrides"),
    (dict(overrides=["betaa=3"]), "unknown setting 'betaa' (did you mean beta?)"),
]


@pytest.mark.parametrize("arguments, message", API_MISTAKES, ids=[str(a) for a, _ in API_MISTAKES])
def test_api_mistakes_are_one_sentence(arguments, message):
    import rine

    y = np.arange(100) % 2
    with pytest.raises(RineError, match=re.escape(message)) as error:
        rine.estimate_redundancy([y, y], y, **arguments)
    assert "\n" not in str(error.value)


def test_api_run_dir_a_file_and_empty_arrays(tmp_path):
    import rine

    y = np.arange(100) % 2
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(RineError, match="is a file; give a folder"):
        rine.estimate_redundancy([y, y], y, run_dir=file)
    with pytest.raises(RineError, match="no samples"):
        rine.estimate_redundancy([np.array([]), np.array([])], np.array([], dtype=int))


def test_api_run_dir_reused_with_other_data_keeps_both(tmp_path):
    import rine

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    first = rine.estimate_redundancy([y, y], y, seeds=1, epochs=1, run_dir=tmp_path)
    other = rine.estimate_redundancy([y, rng.normal(size=200)], y, seeds=1, epochs=1, run_dir=tmp_path)
    assert first.run_dirs != other.run_dirs
    kept = json.loads((Path(first.run_dirs[0]) / "results.json").read_text())
    assert kept["redundancy_bits"] == first.bits  # not overwritten by the other data's run
    again = rine.estimate_redundancy([y, y], y, seeds=1, epochs=1, run_dir=tmp_path)
    assert again.results[0].get("skipped") is True


def test_a_pmf_whose_target_has_one_class_is_refused(tmp_path):
    from rine.pmf import load_pmf

    path = tmp_path / "one_class.csv"
    path.write_text("x1,x2,y,p\n0,0,a,1/2\n1,1,a,1/2\n0,1,b,0\n")
    with pytest.raises(RineError, match=r"y has a single class \(a\) of positive probability"):
        load_pmf(str(path))


def test_a_run_stopped_before_its_group_trains_is_saved_as_interrupted(tmp_path, monkeypatch):
    # Ctrl-C / SIGTERM can land between a run's start and its engine's own handler (while the
    # engine's modules import): the run must read "interrupted", never stay "running".
    import rine.run

    def interrupted_early(members):
        raise KeyboardInterrupt

    monkeypatch.setattr(rine.run, "_train_group_and_finish", interrupted_early)
    cfgs = [compose_config(["task=unq", f"seed={s}", "trainer.max_epochs=1", "report.last_epochs=1"]) for s in (0, 1)]
    with pytest.raises(KeyboardInterrupt):
        run_many(cfgs, [tmp_path / "a", tmp_path / "b"])
    assert [json.loads((tmp_path / d / "results.json").read_text())["status"] for d in "ab"] == ["interrupted"] * 2


def test_a_folder_holding_a_run_of_other_settings_says_it_is_replaced(tmp_path, capsys):
    first = ["task=and", "trainer.max_epochs=1", "report.last_epochs=1"]
    run(compose_config(first), tmp_path)
    capsys.readouterr()
    again = run(compose_config(["task=unq", "trainer.max_epochs=1", "report.last_epochs=1"]), tmp_path)
    assert again["task"] == "unq" and again["status"] == "complete"
    # It names what differs (a fresh user could not tell which setting had changed).
    assert (f"note: {tmp_path} held a complete run (task=and, beta=15, seed=0) of other settings "
            "(task.name: and -> unq, task.pmf: and -> unq); it is replaced by this one") in capsys.readouterr().err


def test_a_refused_command_in_the_default_folders_leaves_no_empty_day_folder(tmp_path):
    from rine.files import remove_folder_holding_only

    run_dir = tmp_path / "runs" / "2026-11-30" / "01-02-03_unq_beta15_seed0"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "train.log").write_text("")
    remove_folder_holding_only(run_dir, {".hydra", "train.log"})
    assert not (tmp_path / "runs" / "2026-11-30").exists() and (tmp_path / "runs").is_dir()
    kept = tmp_path / "runs" / "2026-11-30" / "other"
    (kept / "results.json").parent.mkdir(parents=True)
    (kept / "results.json").write_text("{}")
    remove_folder_holding_only(kept, {".hydra", "train.log"})  # holds a result: left alone
    assert (kept / "results.json").is_file()


def test_an_optimizer_keyword_the_config_leaves_out_or_its_class_refuses_says_how_to_add_or_remove_it():
    # A fresh-user review: `model.optimizer.betas=[0.8,0.99]` (AdamW takes betas; the config does
    # not set it) and RMSprop with model=mlp's `fused` named neither '+' nor '~'.
    from rine.config import check_overrides, compose_config, validate_config
    from rine.errors import RineError

    with pytest.raises(RineError, match=r"add it with a '\+': \+model\.optimizer\.betas="):
        check_overrides(["model.optimizer.betas=[0.8,0.99]"])
    with pytest.raises(RineError, match=r"remove a setting it does not take with ~model\.optimizer\.fused"):
        validate_config(compose_config(["model.optimizer._target_=torch.optim.RMSprop"]))
    validate_config(compose_config(["model.optimizer._target_=torch.optim.RMSprop", "~model.optimizer.fused"]))
