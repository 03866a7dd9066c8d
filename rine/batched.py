"""Many small runs trained as one computation: the seeds x β of a sweep, side by side.

A canonical run takes thousands of tiny steps, each dominated by per-operation overhead,
so R runs one after another cost R times that overhead. Here the n decoders of all R runs
(G = R·n MLPs with the same hidden sizes) are evaluated with batched matrix products and
per-group BatchNorm, so one step of R runs costs little more than one step of one run.

Each run keeps its own data (sampled with its seed), initialisation (built exactly as
rine.run builds it, then copied into the stacked weights), batch order, β schedule and
results folder with results.json and csv/metrics.csv. The one-run Lightning path
(rine.run.run) stays the reference: for the same seed both give the same numbers up to
float rounding (tests/test_batched.py). Runs can share a computation when their configs
differ only in seed and β; supported are MLP decoders on in-memory tasks (the canonical
and pmf tasks, arrays) in mode=estimate. Anything else goes through rine.run.run. A
group saves its state after every epoch in its first run's folder; killed and started
again with the same runs, it continues from there, and complete runs are skipped.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import lightning.pytorch as pl
import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from rine.data import check_splits
from rine.errors import RineError
from rine.estimator import RECALIBRATION_ROWS, disagreement_tv, prediction_distance, scheduled_beta, stage_metrics
from rine.info import nats_to_bits
from rine.run import begin, build, check, constraint_control, finish, outcome_of, run, uses_ddp, validate_config

GROUP_CHECKPOINT = Path("checkpoints") / "batched_group.ckpt"  # in the group's first run folder


class StackedMLPs(nn.Module):
    """G independent rine.models.MLP decoders as one module: [G, batch, in] -> [G, batch, K].

    Built from the MLPs themselves (weights copied), so each group starts exactly where its
    own decoder would. Inputs narrower than `in_width` are zero-padded; the matching weight
    rows start at 0, see only zero inputs, and stay 0.
    """

    def __init__(self, mlps: list[nn.Module], in_width: int):
        super().__init__()
        linears = [[m for m in mlp if isinstance(m, nn.Linear)] for mlp in mlps]
        norms = [[m for m in mlp if isinstance(m, nn.BatchNorm1d)] for mlp in mlps]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for layer in range(len(linears[0])):
            rows = [lin[layer].weight.detach().t() for lin in linears]  # [in, out]
            if layer == 0:
                rows = [F.pad(w, (0, 0, 0, in_width - w.shape[0])) for w in rows]
            self.weights.append(nn.Parameter(torch.stack(rows).contiguous()))
            self.biases.append(nn.Parameter(torch.stack([lin[layer].bias.detach() for lin in linears])))
        self.n_norms = len(norms[0])
        self.bn_weights, self.bn_biases = nn.ParameterList(), nn.ParameterList()
        for layer in range(self.n_norms):
            bns = [norm[layer] for norm in norms]
            self.bn_weights.append(nn.Parameter(torch.stack([bn.weight.detach() for bn in bns])))
            self.bn_biases.append(nn.Parameter(torch.stack([bn.bias.detach() for bn in bns])))
            self.register_buffer(f"running_mean{layer}", torch.stack([bn.running_mean for bn in bns]))
            self.register_buffer(f"running_var{layer}", torch.stack([bn.running_var for bn in bns]))
        self.momentum, self.eps = norms[0][0].momentum, norms[0][0].eps

    @torch.no_grad()
    def recalibrate(self, x: torch.Tensor) -> None:
        """BatchNorm running statistics := the exact statistics of x [G, N, in] under the current
        weights (as RedundancyEstimator.recalibrate_batch_norm: the same passes, the same averaging)."""
        if not self.n_norms:
            return
        momentum, training = self.momentum, self.training
        self.train()
        for n, start in enumerate(range(0, x.shape[1], RECALIBRATION_ROWS)):
            self.momentum = 1.0 / (n + 1)  # a cumulative average over passes, as BatchNorm's momentum=None
            self(x[:, start:start + RECALIBRATION_ROWS])
        self.momentum = momentum
        self.train(training)

    def _norm(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        # Every (group, channel) pair as one channel of PyTorch's own BatchNorm: the same
        # kernel, statistics and running-average update as each decoder's nn.BatchNorm1d.
        groups, batch, channels = x.shape
        flat = x.transpose(0, 1).reshape(batch, groups * channels)
        out = F.batch_norm(
            flat,
            getattr(self, f"running_mean{layer}").view(-1),
            getattr(self, f"running_var{layer}").view(-1),
            self.bn_weights[layer].reshape(-1),
            self.bn_biases[layer].reshape(-1),
            self.training,
            self.momentum,
            self.eps,
        )
        return out.view(batch, groups, channels).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for layer in range(last):
            x = torch.baddbmm(self.biases[layer][:, None], x, self.weights[layer])
            if self.n_norms:
                x = self._norm(x, layer)
            x = torch.relu(x)
        return torch.baddbmm(self.biases[last][:, None], x, self.weights[last])


def batch_key(cfg: DictConfig) -> str:
    """Configs that differ only in seed and β (and logger) can train as one computation."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("seed", "beta", "logger"):
        plain.pop(key, None)
    return json.dumps(plain, sort_keys=True, default=str)


def supported(cfg: DictConfig) -> bool:
    """MLP decoders in mode=estimate on one device (trainer=ddp asked for several)."""
    return (cfg.model.decoder.get("_target_") == "rine.models.MLP" and cfg.get("mode", "estimate") == "estimate"
            and not uses_ddp(cfg))


def _stack_sources(datas, split: str, width: int) -> torch.Tensor:
    """[R, n, N, width]: every run's sources, flattened and zero-padded to one width."""
    return torch.stack([
        torch.stack([F.pad(s.flatten(1), (0, width - s[0].numel())) for s in getattr(d, split).sources])
        for d in datas
    ])


def _save_atomic(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _train_group(cfgs: list[DictConfig], tasks: list, checkpoint: Path | None = None,
                 identity: list | None = None) -> tuple[list[tuple[list[dict], object]], bool]:
    """Train the runs of one group together; returns each run's (history, data), and
    whether training continued from `checkpoint`.

    The group's state is saved to `checkpoint` after every epoch, tagged with `identity`
    (the members' run dirs and configs); a later call with the same identity continues
    after the last saved epoch, with the same weights, optimizer state and histories.
    """
    first = cfgs[0]
    if first.model.get("threads"):
        torch.set_num_threads(first.model.threads)
    datas, mlps = [], []
    for cfg, task in zip(cfgs, tasks):
        # The same order as rine.run._train: seed, sample the data, build the decoders.
        pl.seed_everything(cfg.seed, verbose=False)
        data = task.setup(cfg.seed)
        check_splits(data)
        if data.views is not None:
            raise RineError("batched training supports in-memory tasks only; run image tasks one by one")
        datas.append(data)
        mlps += [build(cfg.model.decoder, input_shape=tuple(s.shape[1:]), n_classes=data.n_classes)
                 for s in data.train.sources]
    runs, n, k = len(cfgs), len(datas[0].train.sources), datas[0].n_classes
    if any(len(d.train.sources) != n or d.n_classes != k or len(d.train) != len(datas[0].train) for d in datas):
        raise RineError("runs batched together need the same sources, classes and sizes; run them one by one")
    width = max(s[0].numel() for d in datas for s in d.train.sources)
    x_train, x_val = _stack_sources(datas, "train", width), _stack_sources(datas, "heldout", width)
    y_train = torch.stack([d.train.y for d in datas])
    y_val = torch.stack([d.heldout.y for d in datas])
    h_y = torch.tensor([d.h_y_bits for d in datas], dtype=torch.float64)

    net = StackedMLPs(mlps, width)
    optimizer = build(first.model.optimizer)(net.parameters())
    batch_size, n_train = first.model.batch_size, y_train.shape[1]
    stop = n_train - 1 if n_train % batch_size == 1 else n_train  # as TensorBatches: no batch of 1
    every_run = torch.arange(runs)[:, None]
    histories: list[list[dict]] = [[] for _ in range(runs)]
    first_epoch = 0
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=True)
        if saved["identity"] == identity:  # exactly these runs: else train afresh
            net.load_state_dict(saved["net"])
            optimizer.load_state_dict(saved["optimizer"])  # its lr carries the decay so far
            histories, first_epoch = saved["histories"], saved["epoch"] + 1

    def evaluate(x, y):
        """x [R, n, b, width], y [R, b] -> per-run CE [R, n], D [R], TV [R], correct [R, n], per-sample CE [R, n, b]."""
        b = y.shape[1]
        logits = net(x.reshape(runs * n, b, width)).view(runs, n, b, k)
        ce_samples = -logits.log_softmax(-1).gather(-1, y[:, None, :, None].expand(runs, n, b, 1)).squeeze(-1)
        probs = logits.softmax(-1)
        distance = prediction_distance(probs, first.distance.normalize, first.distance.pairs, first.distance.smoothing)
        tv = disagreement_tv(probs.detach(), first.distance.pairs)
        correct = (logits.argmax(-1) == y[:, None]).sum(-1)
        return ce_samples.mean(-1), distance, tv, correct, ce_samples

    control = constraint_control(first)
    for epoch in range(first_epoch, first.trainer.max_epochs):
        beta_values = [
            scheduled_beta(c.beta, epoch, c.gamma, c.beta_schedule,
                           control.factor([row["val/disagreement_tv"] for row in history]))
            for c, history in zip(cfgs, histories)
        ]
        betas = torch.tensor(beta_values)
        lr = optimizer.param_groups[0]["lr"]
        order = torch.stack([
            torch.randperm(n_train, generator=torch.Generator().manual_seed(c.seed * 1_000_003 + epoch)) for c in cfgs
        ])
        net.train()
        sums = torch.zeros(runs, 2 * n + 3, dtype=torch.float64)
        seen = 0
        for start in range(0, stop, batch_size):
            idx = order[:, start : start + batch_size]
            x = x_train[every_run, :, idx].permute(0, 2, 1, 3)  # [R, n, b, width]
            ce, distance, tv, correct, _ = evaluate(x, y_train[every_run, idx])
            loss = ce.mean(1) + betas * distance  # [R]; runs share no parameter, so summing is exact
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            b = idx.shape[1]
            seen += b
            sums += torch.cat([ce.detach() * b, distance.detach()[:, None] * b, tv[:, None] * b, correct,
                               loss.detach()[:, None] * b], 1)
        for group in optimizer.param_groups:
            group["lr"] *= first.model.lr_decay
        train = sums / seen  # means over the epoch's samples; column layout: CE_i, D, TV, correct_i, loss
        if not torch.isfinite(train[:, -1]).all():
            bad = [c.seed for c, ok in zip(cfgs, torch.isfinite(train[:, -1])) if not ok]
            raise RineError(f"training loss became NaN/inf in epoch {epoch} (seeds {bad}); lower the learning rate or beta")

        if first.model.get("precise_batch_norm"):
            net.recalibrate(x_train.reshape(runs * n, n_train, width))
        net.eval()
        with torch.no_grad():
            ce, distance, tv, correct, ce_samples = evaluate(x_val, y_val)
        ce_samples = ce_samples.double()  # [R, n, N]
        second_moments = torch.cat([(ce_samples.mean(1) ** 2).mean(-1)[:, None], (ce_samples**2).mean(-1)], 1)
        onehot = F.one_hot(y_val, k).double()  # [R, N, K]
        class_ce = torch.einsum("rn,rnk->rk", ce_samples.mean(1), onehot) / onehot.sum(1)
        val_accuracy = correct.double() / y_val.shape[1]
        for r in range(runs):
            row = {"epoch": epoch, "beta": beta_values[r], "lr": lr}
            row.update(stage_metrics("train", float(h_y[r]), train[r, :n], train[r, n], train[r, n + 1],
                                     train[r, n + 2: 2 * n + 2]))
            row.update(stage_metrics("val", float(h_y[r]), ce[r].double(), distance[r], tv[r], val_accuracy[r],
                                     second_moments[r], y_val.shape[1]))
            row["train/loss"] = float(train[r, -1])
            per_class = h_y[r] - nats_to_bits(class_ce[r])
            for c, value in enumerate(per_class.tolist()):
                row[f"val/redundancy_bits_class{c}"] = value
            histories[r].append(row)
        if checkpoint is not None:
            _save_atomic(checkpoint, {"identity": identity, "epoch": epoch, "net": net.state_dict(),
                                      "optimizer": optimizer.state_dict(), "histories": histories})
    return list(zip(histories, datas)), first_epoch > 0


def _write_csv_log(run_dir: Path, history: list[dict]) -> None:
    path = Path(run_dir) / "csv" / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".metrics.csv.tmp")
    pd.DataFrame(history).to_csv(tmp, index=False)
    os.replace(tmp, path)


def _train_and_finish(members: list[tuple[int, DictConfig, object, dict]]) -> list[tuple[int, dict]]:
    """Train one group begun with rine.run.begin and write each run's log and results.

    The group's checkpoint lives in its first run's folder. A killed group (SIGKILL,
    Ctrl-C) resumes from it when the same runs are started again; a group that failed
    with an error, or finished, removes it.
    """
    start = time.perf_counter()
    checkpoint = Path(members[0][3]["run_dir"]) / GROUP_CHECKPOINT
    identity = [[base["run_dir"], OmegaConf.to_yaml(cfg)] for _, cfg, _, base in members]
    try:
        trained, resumed = _train_group([cfg for _, cfg, _, _ in members], [task for _, _, task, _ in members],
                                        checkpoint, identity)
    except BaseException as error:
        for _, _, _, base in members:
            finish(base, start, error=error)
        if not isinstance(error, (KeyboardInterrupt, SystemExit)):
            checkpoint.unlink(missing_ok=True)
        raise
    finished = []
    for (i, cfg, _, base), (history, data) in zip(members, trained):
        _write_csv_log(base["run_dir"], history)
        outcome = {**outcome_of(history, data, cfg), "batched_with": len(members)}
        if resumed:
            outcome["resumed"] = True
        finished.append((i, finish(base, start, outcome)))
    checkpoint.unlink(missing_ok=True)
    return finished


def _quiet_worker() -> None:
    from rine.run import quiet_framework_output

    if sys.platform == "linux":
        # Die with the sweep: a killed sweep must not leave groups training on (and writing)
        # beside the one started again. 1 is PR_SET_PDEATHSIG.
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    torch.set_num_threads(1)  # the cores are the workers' (each group sets model.threads too)
    quiet_framework_output()


def run_many(
    cfgs: list[DictConfig],
    run_dirs: list[str | Path],
    workers: int = 1,
    on_result: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train every config in its run dir, batching those that can share a computation.

    Complete runs are skipped as in rine.run.run; unsupported configs go through it, one
    after another in this process. With `workers` > 1 the batched groups train in that
    many processes at once. `on_result` sees each run's results as soon as they are
    written. Returns the results of every run, in order.
    """
    results: list[dict | None] = [None] * len(cfgs)

    def done(i: int, result: dict) -> None:
        results[i] = result
        if on_result is not None:
            on_result(result)

    # Every config is checked before any run writes a file: a bad one stops the sweep clean.
    checked = {}
    one_by_one = []
    for i, (cfg, run_dir) in enumerate(zip(cfgs, run_dirs)):
        if supported(cfg):
            checked[i] = check(cfg, run_dir)
        else:
            validate_config(cfg)
            one_by_one.append(i)
    groups: dict[str, list] = {}
    for i, checked_run in checked.items():
        started = begin(cfgs[i], run_dirs[i], checked_run)
        if isinstance(started, dict):
            done(i, started)
            continue
        task, base, _ = started
        groups.setdefault(batch_key(cfgs[i]), []).append((i, cfgs[i], task, base))
    if workers > 1 and len(groups) > 1:
        # Forked workers skip re-importing torch and Lightning (seconds each). Safe: they run
        # torch on one thread, so no OpenMP pool inherited from this process is ever entered.
        context = get_context("fork" if sys.platform == "linux" else "spawn")
        with ProcessPoolExecutor(min(workers, len(groups)), mp_context=context, initializer=_quiet_worker) as pool:
            for future in as_completed([pool.submit(_train_and_finish, members) for members in groups.values()]):
                for i, result in future.result():
                    done(i, result)
    else:
        for members in groups.values():
            for i, result in _train_and_finish(members):
                done(i, result)
    for i in one_by_one:
        done(i, run(cfgs[i], run_dirs[i]))
    return results
