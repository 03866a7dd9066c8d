"""train.py as a user runs it: Hydra overrides, multirun, W&B, and one-line errors."""

import json
from pathlib import Path

import pytest
from conftest import ROOT, assert_one_line_error, run_python


def test_single_run_prints_one_summary_line_and_respects_run_dir(tmp_path):
    # A cold `python train.py` (run_python): the other tests fork theirs from a python with the
    # third-party imports done (conftest.run_warm); this one and the bad input below start as a user's.
    run_dir = tmp_path / "unq_run"
    proc = run_python("train.py", "task=unq", "beta=5", "seed=3", "trainer.max_epochs=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]  # exactly one line
    assert proc.stdout.startswith("unq  beta=5  I∩ = ")
    assert proc.stdout.strip().endswith(f"-> {run_dir}")
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["status"], results["task"], results["beta"], results["seed"]) == ("complete", "unq", 5, 3)
    assert results["epochs"] == 2
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "csv" / "metrics.csv").is_file()


@pytest.mark.slow  # a train.py sweep of 4 runs: ~11 s of CPU
def test_multirun_writes_one_results_file_per_job(tmp_path, script):
    proc = script("train.py", "-m", "task=unq,and", "beta=0,5", "trainer.max_epochs=1",
                  f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*/results.json")]
    assert sorted((r["task"], r["beta"]) for r in runs) == [("and", 0), ("and", 5), ("unq", 0), ("unq", 5)]
    # The default launcher trained the four runs (two tables, same number of sources) as one computation.
    assert [r.get("batched_with") for r in runs] == [4, 4, 4, 4]
    assert all((Path(r["run_dir"]) / ".hydra" / "config.yaml").is_file() for r in runs)
    # β = 0 asks no agreement: its line names the figure for what it is.
    summaries = [line for line in proc.stdout.splitlines() if "I∩ = " in line or "mean usable information = " in line]
    assert len([line for line in summaries if "beta=0  mean usable information = " in line]) == 2
    assert sorted(line.split(" -> ")[1] for line in summaries) == sorted(r["run_dir"] for r in runs)


@pytest.mark.slow  # a train.py sweep with mode=pid: ~9 s of CPU
def test_multirun_sends_what_cannot_be_batched_through_train_py(tmp_path, script):
    proc = script("train.py", "-m", "task=unq", "mode=estimate,pid", "trainer.max_epochs=1",
                  f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    runs = {r["mode"]: r for r in (json.loads(p.read_text()) for p in tmp_path.glob("*/results.json"))}
    assert runs["estimate"]["batched_with"] == 1 and "pid" not in runs["estimate"]
    assert "batched_with" not in runs["pid"] and runs["pid"]["status"] == "complete" and runs["pid"]["pid"]


def test_multirun_bad_value_is_a_one_line_error(tmp_path, script):
    proc = script("train.py", "-m", "task=unq", "beta=5,-1", "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: beta=-1 is invalid; the agreement weight must be a number >= 0"
    assert not list(tmp_path.glob("*/results.json"))  # checked before any run starts


@pytest.mark.slow  # train.py with W&B: ~10 s of CPU
def test_wandb_logger_runs_offline_beside_the_csv_log(tmp_path, script):
    pytest.importorskip("wandb")
    run_dir = tmp_path / "wb"
    proc = script("train.py", "task=unq", "trainer.max_epochs=1", "logger=wandb", f"hydra.run.dir={run_dir}",
                  env={"WANDB_MODE": "offline", "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr
    assert list((run_dir / "wandb").glob("offline-run-*")), "no offline W&B run was written"
    assert (run_dir / "csv" / "metrics.csv").is_file()


BAD_SETTINGS = [
    ("mode=nope", "mode=nope is unknown; choose one of: estimate, pid"),
    ("distance.pairs=some", "distance.pairs=some is unknown; choose one of: all, to_mean"),
    ("task=arrays", "task=arrays needs data: add data_file="),
    ("task=arrays data_file=nope.npz", "data file not found: 'nope.npz'"),
    ("beta=-1", "beta=-1 is invalid"),
    ("gamma=1.5", "gamma=1.5 is invalid"),
    ("gamma=0", "gamma=0 is invalid"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 is invalid"),
]


@pytest.mark.parametrize("override, message", BAD_SETTINGS)
def test_bad_settings_stop_the_run_before_it_writes_anything(tmp_path, override, message):
    # rine.run.run is what train.py calls; how train.py prints its RineError is the test below.
    from rine.config import compose_config
    from rine.errors import RineError
    from rine.run import run

    run_dir = tmp_path / "bad"
    with pytest.raises(RineError) as error:
        run(compose_config(override.split()), run_dir)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not run_dir.exists()


# One bad input per place where train.py stops (each a process: ~2.5 s of imports): before
# Hydra composes the config, in the settings, in the task's inputs. The other messages of
# BAD_SETTINGS take the same path from rine.run.run to the command line.
@pytest.mark.parametrize(
    "override, message",
    [
        ("task=nope", "unknown task 'nope'; choose one of: and, "),
        ("beta=-1", "beta=-1 is invalid"),
        ("task=arrays data_file=nope.npz", "data file not found: 'nope.npz'"),
    ],
)
def test_bad_input_is_one_line_without_traceback(tmp_path, override, message):
    run_dir = tmp_path / "bad"
    proc = run_python("train.py", *override.split(), f"hydra.run.dir={run_dir}")
    assert message in assert_one_line_error(proc)
    assert not (run_dir / "results.json").exists()


@pytest.mark.slow  # train.py and a submitit process per run: ~16 s of CPU
def test_sweep_through_submitit_local_launcher(tmp_path, script):
    # The same launcher code path as hydra/launcher=slurm, with local processes.
    proc = script("train.py", "-m", "hydra/launcher=submitit_local", "task=unq", "beta=0,5", "trainer.max_epochs=1",
                  f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    statuses = [json.loads(p.read_text())["status"] for p in tmp_path.glob("*/results.json")]
    assert statuses == ["complete", "complete"]


def test_slurm_launcher_config_composes_with_its_knobs():
    from hydra import compose, initialize_config_dir

    from rine.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.gpus_per_node=2"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 2, 120)
    assert launcher.array_parallelism == 64


def test_the_batched_launcher_composes_each_job_once_after_hydras_check():
    # Hydra's sweeper composes every job to check it, then the launcher composed it again
    # (~0.1 s a job: 9 s of `python train.py experiment=table6`'s 36 s).
    _compose_each_job_once = _batched_launcher_module()._compose_each_job_once

    class Loader:
        calls = 0

        def load_sweep_config(self, master, overrides):
            Loader.calls += 1
            return {"overrides": list(overrides), "call": Loader.calls}

    loader, master = Loader(), object()
    _compose_each_job_once(loader)
    _compose_each_job_once(loader)  # set up twice (a second sweep in one process): still one wrapper
    checked = [loader.load_sweep_config(master, [f"seed={s}"]) for s in range(3)]  # the sweeper's check
    launched = [loader.load_sweep_config(master, [f"seed={s}"]) for s in range(3)]  # the launcher's
    assert Loader.calls == 3 and [c is l for c, l in zip(checked, launched)] == [True] * 3
    # Handed out once more only: a third request (or another master config) composes afresh.
    assert loader.load_sweep_config(master, ["seed=0"])["call"] == 4
    assert loader.load_sweep_config(object(), ["seed=1"])["call"] == 5


def _batched_launcher_module():
    import importlib.util

    # (by its path: the hydra_plugins package of the installed Hydra plugins shadows ours on import)
    spec = importlib.util.spec_from_file_location(
        "batched_launcher", ROOT / "hydra_plugins" / "rine_batched_launcher" / "batched_launcher.py")
    launcher = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launcher)
    return launcher


def test_jobs_differing_in_plain_values_get_the_config_hydra_composes():
    # A job that differs from a composed one only in plain values (seed=3, beta=5) is that
    # job's config with the values applied: it must equal Hydra's own compose of it, hydra
    # node included (overrides, override_dirname), for every job of a sweep.
    import copy

    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from rine.config import CONFIG_DIR

    launcher = _batched_launcher_module()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        loader = copy.copy(GlobalHydra.instance().hydra.config_loader)
        compose = loader.load_sweep_config
        master = loader.load_configuration("train", ["experiment=table6"], run_mode=RunMode.MULTIRUN)
        calls = []
        loader.load_sweep_config = lambda m, o: calls.append(o) or compose(m, o)
        launcher._compose_each_job_once(loader)
        jobs = [["experiment=table6", f"task={t}", f"beta={b}", f"seed={s}"]
                for t in ("unq", "and") for b in (0, 5, 1.5e-3) for s in (0, 7)]
        jobs += [["experiment=table6", "task=unq", "beta=5", "seed=1", "model.optimizer.lr=0.02", "report.curves=false",
                  "task.n_samples=600"],
                 ["experiment=table6", "task=unq", "beta=5", "seed=2", "model.optimizer.lr=0.5", "report.curves=true",
                  "task.n_samples=700"],
                 ["experiment=table6", "task=unq", "beta=5", "seed=2", "model.optimizer.lr=0.5", "report.curves=true",
                  "+extra=1"]]  # an addition: composed by Hydra
        # A fresh user's: a later ++ / ~ then + of a swept key is applied after it (Hydra's order):
        # every job of these composed by Hydra, never a copy with the swept value applied last.
        later = [["experiment=table6", "task=and", "beta=5", f"seed={s}", "++beta=3"] for s in (0, 1)]
        later += [["experiment=table6", "task=and", f"beta={b}", "seed=0", "~beta", "+beta=7"] for b in (5, 6)]
        later += [["experiment=table6", "task=and", "beta=5", "seed=0", f"model.optimizer.lr={lr}",
                   "++model.optimizer={lr: 0.005}"] for lr in (0.01, 0.02)]
        jobs += later
        fast = [loader.load_sweep_config(master, job) for job in jobs]
        for job, config in zip(jobs, fast):
            expected = compose(master, job)
            assert OmegaConf.to_container(config) == OmegaConf.to_container(expected), job
            assert config.hydra.job.override_dirname == expected.hydra.job.override_dirname
        assert [c.beta for c in fast[-6:-2]] == [3, 3, 7, 7]
        assert [c.model.optimizer.lr for c in fast[-2:]] == [0.005, 0.005]
        # Composed by Hydra: the first job of each task, the first with the other values, the
        # addition, and every job whose swept key a later override touches.
        assert [c[1:] for c in calls[:4]] == [["task=unq", "beta=0", "seed=0"], ["task=and", "beta=0", "seed=0"],
                                             jobs[-9][1:], jobs[-7][1:]]
        assert calls[4:] == later and len(calls) == 4 + len(later)  # the other 11 are copies
    GlobalHydra.instance().clear()


def test_a_sweep_over_files_names_each_job_flat_and_apart():
    # A fresh user's: /tmp/d1/p.csv and /tmp/d2/p.csv gave one folder, pmf_file=p, and the second run
    # found the first's lock (or, with the basic launcher, replaced its result).
    from rine.config import _job_dirname

    first, second = (_job_dirname([f"pmf_file=/tmp/d{i}/p.csv", "task=pmf", "seed=0"]) for i in (1, 2))
    assert first != second and "/" not in first + second
    assert first.startswith("pmf_file=p-") and first.endswith(",seed=0,task=pmf")
    assert _job_dirname(["pmf_file='/tmp/d1/p.csv'", "task=pmf", "seed=0"]) == first  # quoted alike
    assert _job_dirname(["beta=5", "seed=0"]) == "beta=5,seed=0"


@pytest.mark.slow  # two small sweeps: ~8 s
def test_a_refused_sweep_leaves_an_earlier_sweeps_job_folders_as_they_were(tmp_path, script):
    # A fresh user's: the second sweep's missing file was found after Hydra had rewritten the
    # finished job's .hydra/ files (its overrides then named the refused sweep).
    common = ["-m", "task=pmf", "task.n_samples=500", "trainer.max_epochs=1", f"hydra.sweep.dir={tmp_path}"]
    first = script("train.py", *common, "pmf_file=and")
    assert first.returncode == 0, first.stderr
    saved = {path: path.read_bytes() for path in [*tmp_path.glob("*/.hydra/*.yaml"), tmp_path / "multirun.yaml"]}
    assert len(saved) == 4  # config, hydra, overrides of the one job; the sweep's multirun.yaml
    for refused_by in (["pmf_file=and,/nonexistent/p.csv"],  # its data
                       ["pmf_file=and", "model=mlp,small_cnn", "model.decoder.hidden=[3]"],  # a job Hydra cannot compose
                       ["pmf_file=and", "seed=0,1", "hydra.sweep.subdir=x"]):  # two jobs of one folder
        refused = script("train.py", *common, *refused_by)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert {path: path.read_bytes() for path in saved} == saved, refused_by
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1  # no folder of the refused sweep's jobs
