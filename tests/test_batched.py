"""Many runs as one computation (rine.batched) against the one-run reference path."""

import json
import sys

import pandas as pd
import pytest

from rine.config import compose_config
from rine.run import run, run_many

POINTS = [("rdnxor", 0, 1), ("rdnxor", 15, 1), ("unq", 15, 1), ("unq", 15, 2)]


def configs():
    overrides = ["trainer.max_epochs=3", "report.last_epochs=2"]
    return [compose_config([f"task={t}", f"beta={b}", f"seed={s}", *overrides]) for t, b, s in POINTS]


@pytest.mark.slow  # 8 trainings and 2 worker processes: ~6 s of CPU
def test_batched_runs_give_the_one_run_numbers(tmp_path):
    cfgs = configs()
    reported = []
    # (Four runs are too few to split between the two workers: one group, in this process.)
    batched = run_many(cfgs, [tmp_path / f"batched{i}" for i in range(len(cfgs))], workers=2,
                       on_result=reported.append)
    assert sorted(r["run_dir"] for r in reported) == sorted(r["run_dir"] for r in batched)
    for i, (cfg, together) in enumerate(zip(cfgs, batched)):
        # The reference: the same config on Lightning's engine, one run at a time.
        alone = run(compose_config([f"task={cfg.task.name}", f"beta={cfg.beta}", f"seed={cfg.seed}",
                                    "trainer.max_epochs=3", "report.last_epochs=2", "engine=lightning"]),
                    tmp_path / f"alone{i}")
        assert (together["task"], together["beta"], together["seed"]) == (alone["task"], alone["beta"], alone["seed"])
        assert together["batched_with"] == 4  # the rdnxor and unq tables share one computation
        # Same data, initialisation, batch order and schedules: only float rounding differs.
        # RDNXOR is well conditioned, so the two paths agree to 1e-4 bits at every epoch.
        # UNQ amplifies rounding: after its first epoch the held-out BatchNorm statistics of
        # nearly constant one-hot features can move the estimate by 0.1 bit (the one-run path
        # itself moves by ~1e-2 bits between 1 and 2 threads); from epoch 1 on it settles.
        tight = cfg.task.name == "rdnxor"
        bits, first = (1e-4, 0) if tight else (1e-2, 1)
        assert together["curve"]["beta"] == alone["curve"]["beta"]
        for key in ("redundancy_bits", "disagreement_tv"):
            assert together["curve"][key][first:] == pytest.approx(alone["curve"][key][first:], abs=bits), key
        assert together["redundancy_bits"] == pytest.approx(alone["redundancy_bits"], abs=bits)
        if tight:  # per class, UNQ's mid-training values swing by ~0.1 bit with rounding alone
            assert together["per_class_redundancy_bits"] == pytest.approx(alone["per_class_redundancy_bits"], abs=1e-4)
        assert together["usable_info_bits"] == pytest.approx(alone["usable_info_bits"], abs=bits)
        log = pd.read_csv(tmp_path / f"batched{i}" / "csv" / "metrics.csv")
        assert list(log["epoch"]) == [0, 1, 2]
        alone_log = pd.read_csv(tmp_path / f"alone{i}" / "csv" / "metrics.csv")
        # One writer, one format: the same columns in the same order, with the same types.
        assert list(alone_log.columns) == list(log.columns) and alone_log.dtypes.equals(log.dtypes)
        assert log["epoch"].dtype.kind == log["step"].dtype.kind == "i" and list(log["step"]) == list(alone_log["step"])


def test_batched_results_files_are_complete_and_reruns_skip_them(tmp_path):
    cfgs = configs()[:2]
    dirs = [tmp_path / "a", tmp_path / "b"]
    first = run_many(cfgs, dirs)
    on_disk = [json.loads((d / "results.json").read_text()) for d in dirs]
    assert [r["status"] for r in on_disk] == ["complete", "complete"]
    assert on_disk[0]["redundancy_bits"] == first[0]["redundancy_bits"]
    again = run_many(cfgs, dirs)
    assert all(r.get("skipped") for r in again)


def test_worker_processes_give_the_numbers_of_one_process(tmp_path):
    # Eight runs: split into two groups of four, one per forked worker. One table, so neither
    # the input width nor the classes are padded differently in the split and the whole group,
    # and the numbers must be identical (other padding changes float rounding only, e.g. AND's 2
    # classes padded to 4, which UNQ-like tables amplify to ~1e-3 bits after one epoch).
    cfgs = [compose_config(["task=rdnxor", f"seed={s}", "trainer.max_epochs=1", "report.last_epochs=1"])
            for s in range(8)]
    two = run_many(cfgs, [tmp_path / f"two{i}" for i in range(8)], workers=2)
    one = run_many(cfgs, [tmp_path / f"one{i}" for i in range(8)], workers=1)
    assert [r["batched_with"] for r in two] == [4] * 8 and [r["batched_with"] for r in one] == [8] * 8
    for a, b in zip(two, one):
        assert a["redundancy_bits"] == pytest.approx(b["redundancy_bits"], abs=1e-6)


def test_batched_runs_keep_their_trained_decoders_in_the_one_run_format(tmp_path):
    import torch

    from rine.config import build
    from rine.info import nats_to_bits
    from rine.training import build_estimator

    cfg = configs()[1]  # rdnxor, β = 15
    together = run_many([cfg, configs()[0]], [tmp_path / "batched", tmp_path / "other"])[0]
    on_lightning = cfg.copy()
    on_lightning.engine = "lightning"
    alone = run(on_lightning, tmp_path / "alone")
    saved = torch.load(tmp_path / "batched" / "checkpoints" / "decoders.ckpt", weights_only=True)
    one_run = torch.load(tmp_path / "alone" / "checkpoints" / "last.ckpt", weights_only=False)
    assert list(saved["state_dict"]) == list(one_run["state_dict"])  # the same keys, in the same order
    assert saved["epoch"] == one_run["epoch"] == 2 and len(saved["rine_history"]) == 3

    # Loaded into the decoders the one-run engine builds, they give the run's final held-out I∩.
    data = build(cfg.task).setup(cfg.seed)
    module = build_estimator(cfg, data)
    module.load_state_dict(saved["state_dict"])
    module.eval()
    with torch.no_grad():
        logits = module(data.heldout.sources)  # [n, N, K]
        ce = torch.stack([torch.nn.functional.cross_entropy(lg, data.heldout.y) for lg in logits])
    redundancy = data.h_y_bits - float(nats_to_bits(ce.mean()))
    assert redundancy == pytest.approx(together["redundancy_bits_final"], abs=1e-5)
    assert redundancy == pytest.approx(alone["redundancy_bits_final"], abs=1e-3)


@pytest.mark.parametrize("hidden, batch_norm, classes", [((8, 4), True, (4, 4)), ((8,), False, (4, 4)),
                                                         ((), True, (4, 4)), ((8,), True, (2, 4))])
def test_stacked_weights_copy_back_into_each_decoder(hidden, batch_norm, classes):
    import torch

    from rine.models import MLP, StackedMLPs

    torch.manual_seed(0)
    widths = [3, 5]  # the narrower input is zero-padded in the stack
    # (Decoders of fewer classes are padded to the most: a table of 2 classes batched with one of 4.)
    mlps = [MLP((w,), k, hidden=hidden, batch_norm=batch_norm) for w, k in zip(widths, classes)]
    net = StackedMLPs(mlps, max(widths), out_width=max(classes))
    net.train()
    x = torch.randn(2, 16, max(widths))  # [G, batch, in]; the stack takes it features-major
    x[0, :, widths[0]:] = 0
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))  # "training": the stack moves away from the decoders it was built from
    net(x.transpose(1, 2))  # and its BatchNorm statistics too
    net.eval()
    net.copy_to(mlps)
    with torch.no_grad():
        stacked = net(x.transpose(1, 2))
        for g, (mlp, w) in enumerate(zip(mlps, widths)):
            mlp.eval()
            assert torch.allclose(mlp(x[g, :, :w]), stacked[g, : classes[g]].t(), atol=1e-5)


@pytest.mark.parametrize("overrides, batched", [
    ([], True),
    (["task=embedded"], True),
    (["task=arrays"], True),
    (["mode=pid"], False),
    # Image tasks cut their views batch by batch: never batched, even with MLP decoders.
    (["task=digits_crop"], False),
    (["task=mnist_crop", "model=mlp"], False),
    (["task=cifar_crop", "model=mlp"], False),
    (["task=mnist_crop"], False),
])
def test_a_sweep_batches_only_mlp_runs_of_in_memory_tasks(overrides, batched):
    from rine.batched import supported
    from hydra.utils import get_class

    cfg = compose_config(overrides)
    # The task's class says whether its sources are cut from images (no data needed to ask it).
    assert supported(cfg, get_class(cfg.task._target_)) is batched


def test_run_many_trains_image_tasks_with_mlp_decoders_one_by_one(tmp_path):
    # task=digits_crop's decoders are MLPs, but its sources are views of images: the one-run path.
    cfgs = [compose_config(["task=digits_crop", f"width={w}", "trainer.max_epochs=1", "report.last_epochs=1"])
            for w in (2, 4)]
    results = run_many(cfgs, [tmp_path / "w2", tmp_path / "w4"], workers=2)
    assert [(r["status"], r["width"]) for r in results] == [("complete", 2), ("complete", 4)]
    assert all("batched_with" not in r for r in results)


def test_stacked_recalibration_gives_each_decoders_own_batch_norm_statistics():
    # Precise BatchNorm: the stack's in-place recalibration must leave, for every decoder, the
    # running statistics that nn.BatchNorm1d's own training-mode passes (the one-run engine's
    # recalibrate_batch_norm) leave, here over three passes of unequal size, with a constant
    # input feature whose variance is 0 (the case a wrong variance turns into -600 bits).
    import torch

    import rine.models as models
    from rine.models import MLP, StackedMLPs

    torch.manual_seed(0)
    mlps = [MLP((4,), 3, hidden=(8, 5)) for _ in range(3)]
    net = StackedMLPs(mlps, 4, out_width=3)
    x = torch.randn(3, 4, 50) * 3 + 1  # [G, in, N]
    x[1, 2] = 7.0
    rows, models.RECALIBRATION_ROWS = models.RECALIBRATION_ROWS, 20
    try:
        net.recalibrate(x)
    finally:
        models.RECALIBRATION_ROWS = rows
    with torch.no_grad():
        for g, mlp in enumerate(mlps):
            norms = [m for m in mlp if isinstance(m, torch.nn.BatchNorm1d)]
            for bn in norms:
                bn.reset_running_stats()
                bn.momentum = None
            mlp.train()
            for start in range(0, 50, 20):
                mlp(x[g, :, start:start + 20].t())
            for layer, bn in enumerate(norms):
                assert torch.allclose(getattr(net, f"running_mean{layer}")[g], bn.running_mean, atol=1e-5)
                assert torch.allclose(getattr(net, f"running_var{layer}")[g], bn.running_var, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("options", [
    {"_target_": "torch.optim.SGD", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "fused": True},  # model=mlp_paper
    {"_target_": "torch.optim.SGD", "lr": 0.1},
    {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 0.0, "fused": True},  # model=mlp
    {"_target_": "torch.optim.AdamW", "lr": 1e-3},
    {"_target_": "torch.optim.Adam", "lr": 1e-3, "amsgrad": True, "weight_decay": 0.1},
])
def test_the_batched_engines_optimizer_steps_as_torchs_class_to_the_last_bit(options):
    # rine.optimizers applies torch's functional SGD/Adam(W) without the class (whose first use
    # imports torch._dynamo, ~1.5 s): the parameters must follow the class's exactly, through
    # the per-epoch lr decay and a save/load of its state (a resumed group) halfway.
    import torch
    from omegaconf import OmegaConf

    from rine.optimizers import FunctionalOptimizer, build_optimizer

    torch.manual_seed(0)
    ours = [torch.randn(3, 4, requires_grad=True), torch.randn(5, requires_grad=True)]
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    optimizer = build_optimizer(OmegaConf.create({**options, "_partial_": True}), ours)
    assert isinstance(optimizer, FunctionalOptimizer)
    reference = getattr(torch.optim, options["_target_"].rsplit(".", 1)[1])(
        theirs, **{k: v for k, v in options.items() if k != "_target_"})
    for step in range(12):
        if step == 6:
            saved = optimizer.state_dict()
            optimizer = build_optimizer(OmegaConf.create({**options, "_partial_": True}), ours)
            optimizer.load_state_dict(saved)
        grads = [torch.randn_like(p) for p in ours]
        for opt, params in ((optimizer, ours), (reference, theirs)):
            opt.zero_grad(set_to_none=True)
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
            opt.param_groups[0]["lr"] *= 0.97
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs)), step


def test_other_optimizers_are_built_as_their_class():
    import torch
    from omegaconf import OmegaConf

    from rine.optimizers import build_optimizer

    params = [torch.zeros(2, requires_grad=True)]
    built = build_optimizer(OmegaConf.create({"_target_": "torch.optim.RMSprop", "_partial_": True, "lr": 0.01}), params)
    assert isinstance(built, torch.optim.RMSprop)
    built = build_optimizer(OmegaConf.create({"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01,
                                              "differentiable": True}), params)
    assert isinstance(built, torch.optim.SGD)  # an option the functional path does not take


def test_a_group_too_large_for_the_free_memory_trains_in_parts_with_the_same_numbers(tmp_path, monkeypatch, capsys):
    # bench_accuracy's d = 1,024, n = 50,000 with 3 seeds: 24 runs of 1.5 GB each in 24 GB.
    import rine.run

    cfgs = [compose_config(["task=rdnxor", f"seed={s}", "trainer.max_epochs=2", "report.last_epochs=1"])
            for s in range(4)]
    whole = run_many(cfgs, [tmp_path / f"whole{i}" for i in range(4)])
    per_run = rine.run.DATA_COPIES * 4 * 2 * 10_000 * 4  # float32, 2 sources of 4 one-hot columns, 10,000 samples
    monkeypatch.setattr(rine.run, "_available_memory_bytes", lambda: int(2.5 * per_run / 0.8))
    parts = run_many(cfgs, [tmp_path / f"parts{i}" for i in range(4)])
    assert "note: 4 runs train in parts of 2" in capsys.readouterr().err
    assert [r["batched_with"] for r in whole] == [4] * 4 and [r["batched_with"] for r in parts] == [2] * 4
    for together, apart in zip(whole, parts):
        assert apart["seed"] == together["seed"]
        assert apart["curve"]["redundancy_bits"] == pytest.approx(together["curve"]["redundancy_bits"], abs=1e-6)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_our_processes_reuse_freed_memory_instead_of_faulting_it_in_again():
    # A step's activations freed together: glibc gave the memory back (its dynamic trim threshold
    # is at most 64 MB) and the kernel zero-filled it again every step (~5,000 page faults an
    # epoch for 60 decoders) until keep_freed_memory (train.py, sweep workers) fixed its thresholds.
    from conftest import run_python

    code = """
import resource, sys, torch
from rine.run import keep_freed_memory
if sys.argv[1] == "kept":
    keep_freed_memory()
def step():
    live = [torch.ones(2**19 + 1000 * i) for i in range(40)]  # ~80 MB of ~2 MB tensors, freed together
    return sum(t[0] for t in live)
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""
    faults = {}
    for mode in ("default", "kept"):
        proc = run_python("-c", code, mode)
        assert proc.returncode == 0, proc.stderr
        faults[mode] = float(proc.stdout)
    assert faults["default"] > 10_000 and faults["kept"] < 100, faults  # pages of 4 KB a step
