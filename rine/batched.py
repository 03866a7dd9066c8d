"""Many small runs trained as one computation: the seeds x β of a sweep, side by side.

A canonical run takes thousands of tiny steps, each dominated by per-operation overhead,
so R runs one after another cost R times that overhead. Here the n decoders of all R runs
(G = R·n MLPs with the same hidden sizes) are evaluated with batched matrix products and
per-group BatchNorm (rine.models.StackedMLPs), so one step of R runs costs little more than
one step of one run.

Each run keeps its own data (sampled with its seed), initialisation (built exactly as
rine.training.fit builds it, then copied into the stacked weights), batch order, β schedule
and per-epoch figures (rine.objective.stage_metrics, as the Lightning engine). The one-run
engine stays the reference: for the same seed both give the same numbers up to float
rounding (tests/test_batched.py). Runs can share a computation when their configs differ
only in seed and β (batch_key); supported are MLP decoders on in-memory tasks in
mode=estimate on one device (supported). rine.run.run_many decides what to batch and
writes each run's folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from rine.config import constraint_control, inner_validation_fraction, uses_ddp
from rine.data import TaskData, epoch_order, train_batch_starts, training_data
from rine.errors import RineError
from rine.files import save_torch_atomic
from rine.info import nats_to_bits
from rine.models import MLP, StackedMLPs
from rine.rundir import readable_checkpoint
from rine.objective import disagreement_tv, prediction_distance, scheduled_beta, stage_metrics
from rine.optimizers import build_optimizer


def batch_key(cfg: DictConfig, task=None) -> str:
    """Configs that differ only in seed and β (and logger) can train as one computation; so can
    discrete tasks of different tables with the same number of sources (their inputs pad to one
    width, their classes to one K)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for key in ("seed", "beta", "logger"):
        plain.pop(key, None)
    pmf = getattr(task, "pmf", None)
    if pmf is not None:
        for key in ("name", "pmf", "true_redundancy"):
            plain["task"].pop(key, None)
        plain.pop("pmf_file", None)
        plain["n_sources"] = pmf.n_sources
    return json.dumps(plain, sort_keys=True, default=str)


def supported(cfg: DictConfig, task=None) -> bool:
    """MLP decoders in mode=estimate on one device (trainer=ddp asked for several), on a task
    whose sources are in-memory tensors (not cut from images per batch: `task.cut_from_images`)."""
    return (cfg.model.decoder._target_ == "rine.models.MLP" and cfg.mode == "estimate" and not uses_ddp(cfg)
            and not getattr(task, "cut_from_images", False))


def _stack_sources(datas, split: str, width: int) -> torch.Tensor:
    """[R, n, N, width]: every run's sources, flattened and zero-padded to one width."""
    return torch.stack([
        torch.stack([F.pad(s.flatten(1), (0, width - s[0].numel())) for s in getattr(d, split).sources])
        for d in datas
    ])


def _features_major(x: torch.Tensor) -> torch.Tensor:
    """[R, n, N, width] -> [R·n, width, N], the layout StackedMLPs takes."""
    runs, n, samples, width = x.shape
    return x.reshape(runs * n, samples, width).transpose(1, 2).contiguous()


def train_group(cfgs: list[DictConfig], tasks: list, checkpoint: Path | None = None,
                identity: list | None = None) -> tuple[list[tuple[list[dict], TaskData, dict]], bool]:
    """Train the runs of one group together; returns each run's (history, data, decoders),
    and whether training continued from `checkpoint`. `decoders` is the run's trained
    decoders as a state dict in the one-run engine's format (RedundancyEstimator's keys,
    `decoders.<source>.<layer>.<parameter>`, as in checkpoints/last.ckpt's `state_dict`).

    The group's state is saved to `checkpoint` after every epoch, tagged with `identity`
    (the members' run dirs and configs); a later call with the same identity continues
    after the last saved epoch, with the same weights, optimizer state and histories.
    """
    first = cfgs[0]
    if first.model.threads:
        torch.set_num_threads(first.model.threads)
    # Every run's decoder config is the same rine.models.MLP (batch_key, supported): called
    # directly, as Hydra's instantiate would call it, which costs ~10 ms a decoder.
    decoder = {key: value for key, value in OmegaConf.to_container(first.model.decoder, resolve=True).items()
               if not key.startswith("_")}
    datas, mlps = [], []
    for cfg, task in zip(cfgs, tasks):
        # The same order as rine.training.fit: seed, sample the data, build the decoders.
        data = training_data(task, cfg.seed, inner_validation_fraction(cfg))
        datas.append(data)
        mlps += [MLP(input_shape=tuple(s.shape[1:]), n_classes=data.n_classes, **decoder) for s in data.train.sources]
    runs, n = len(cfgs), len(datas[0].train.sources)
    if any(len(d.train.sources) != n or len(d.train) != len(datas[0].train) or len(d.heldout) != len(datas[0].heldout)
           for d in datas):
        raise RineError("runs batched together need the same number of sources and samples; run them one by one")
    # Runs of fewer classes are padded to the largest K; their missing classes get -inf logits.
    n_classes = torch.tensor([d.n_classes for d in datas])
    k = int(n_classes.max())
    class_mask = torch.where(torch.arange(k) < n_classes[:, None], 0.0, float("-inf"))[:, None, :, None]
    masked = bool((n_classes < k).any())  # no padded class: no mask to add at every step
    width = max(s[0].numel() for d in datas for s in d.train.sources)
    # Features-major [R·n, width, N] only (StackedMLPs' layout): one copy of the data in memory.
    x_train_features = _features_major(_stack_sources(datas, "train", width))
    x_val_features = _features_major(_stack_sources(datas, "heldout", width))
    x_inner_features = _features_major(_stack_sources(datas, "inner", width)) if datas[0].inner else None
    y_train = torch.stack([d.train.y for d in datas])
    y_val = torch.stack([d.heldout.y for d in datas])
    y_inner = torch.stack([d.inner.y for d in datas]) if datas[0].inner else None
    h_y = torch.tensor([d.h_y_bits for d in datas], dtype=torch.float64)

    net = StackedMLPs(mlps, width, out_width=k)
    optimizer = build_optimizer(first.model.optimizer, list(net.parameters()))
    batch_size, n_train = first.model.batch_size, y_train.shape[1]
    starts = train_batch_starts(n_train, batch_size)
    every_run = torch.arange(runs)[:, None]
    histories: list[list[dict]] = [[] for _ in range(runs)]
    first_epoch = 0
    if checkpoint is not None and checkpoint.is_file() and readable_checkpoint(checkpoint):
        saved = torch.load(checkpoint, weights_only=True)
        # Exactly these runs, saved in this version's parameter layout: else train afresh.
        if saved["identity"] == identity and saved.get("layout") == StackedMLPs.LAYOUT:
            net.load_state_dict(saved["net"])
            optimizer.load_state_dict(saved["optimizer"])  # its lr carries the decay so far
            histories, first_epoch = json.loads(saved["histories"]), saved["epoch"] + 1
            print(f"resuming {len(cfgs)} run(s) from {checkpoint} after epoch {first_epoch}",
                  file=sys.stderr, flush=True)

    # Read once: a config lookup costs more than a small step's arithmetic.
    normalize, pairs, smoothing = first.distance.normalize, first.distance.pairs, float(first.distance.smoothing)

    # Without smoothing, D is the mean total variation times a per-run constant (½ L1 scaled
    # by its normalization): TV follows from D without a second pass over the pairs.
    tv_per_distance = None
    if smoothing == 0:
        tv_per_distance = {"tv": torch.ones(runs), "none": torch.full((runs,), 0.5),
                           "classes": n_classes.float() / 2}.get(normalize)

    def evaluate(x, y):
        """x [R·n, width, b], y [R, b] -> per-run CE [R, n], D [R], TV [R], correct [R, n], per-sample CE [R, n, b].

        The classes are axis -2 throughout (StackedMLPs' layout): see its docstring for why."""
        b = y.shape[1]
        logits = net(x).view(runs, n, k, b)
        if masked:
            logits = logits + class_mask
        ce_samples = -logits.log_softmax(-2).gather(-2, y[:, None, None, :].expand(runs, n, 1, b)).squeeze(-2)
        # (exp of the log_softmax would save a kernel, but its rounding differs from softmax's
        # and 30 epochs of SGD amplify that to ~0.005 bits: kept as the one-run engine computes it)
        probs = logits.softmax(-2).transpose(-1, -2)  # [R, n, b, K], as prediction_distance takes it
        distance = prediction_distance(probs, normalize, pairs, smoothing, n_classes)
        if tv_per_distance is not None:
            tv = distance.detach() * tv_per_distance
        else:
            tv = disagreement_tv(probs.detach(), pairs)
        # max's indices are argmax's (the first largest), ~15x faster over a non-innermost axis
        correct = (logits.detach().max(-2).indices == y[:, None]).sum(-1)
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
        order = torch.stack([epoch_order(c.seed, epoch, n_train) for c in cfgs])
        # The epoch's samples in batch order, gathered once: each step's batch is then a view.
        x_epoch = (x_train_features.view(runs, n, width, n_train)[every_run, :, :, order]  # [R, N, n, width]
                   .permute(0, 2, 3, 1).reshape(runs * n, width, n_train))
        y_epoch = y_train[every_run, order]
        net.train()
        steps, sizes = [], []
        for start in starts:
            y = y_epoch[:, start : start + batch_size]
            ce, distance, tv, correct, _ = evaluate(x_epoch[..., start : start + batch_size], y)
            loss = ce.mean(1) + betas * distance  # [R]; runs share no parameter, so summing is exact
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            # Kept as tensors and summed once after the epoch: no per-step arithmetic or sync.
            steps.append((ce.detach(), distance.detach(), tv, correct, loss.detach()))
            sizes.append(y.shape[1])
        for group in optimizer.param_groups:
            group["lr"] *= first.model.lr_decay
        weights = torch.tensor(sizes, dtype=torch.float64)

        def total(column: list[torch.Tensor], weighted: bool = True) -> torch.Tensor:
            stacked = torch.stack(column).double()  # [steps, R(, n)]
            return (stacked * weights.view(-1, *[1] * (stacked.dim() - 1))).sum(0) if weighted else stacked.sum(0)

        ce_sum, distance_sum, tv_sum, correct_sum, loss_sum = zip(*steps)
        # Means over the epoch's samples; column layout: CE_i, D, TV, correct_i, loss.
        train = torch.cat([total(ce_sum), total(distance_sum)[:, None], total(tv_sum)[:, None],
                           total(correct_sum, weighted=False), total(loss_sum)[:, None]], 1) / weights.sum()
        if not torch.isfinite(train[:, -1]).all():
            bad = [c.seed for c, ok in zip(cfgs, torch.isfinite(train[:, -1])) if not ok]
            raise RineError(f"training loss became NaN/inf in epoch {epoch} (seeds {bad}); lower the learning rate or beta")

        if first.model.precise_batch_norm:
            net.recalibrate(x_train_features)
        net.eval()
        with torch.no_grad():
            ce, distance, tv, correct, ce_samples = evaluate(x_val_features, y_val)
            inner = evaluate(x_inner_features, y_inner)[:4] if y_inner is not None else None
        finite = torch.isfinite(ce).all(1)
        if not finite.all():  # e.g. a learning rate so large that the recalibrated BatchNorm overflows
            bad = [c.seed for c, ok in zip(cfgs, finite) if not ok]
            raise RineError(f"the held-out cross-entropy became NaN/inf in epoch {epoch} (seeds {bad}); "
                            "lower the learning rate or beta")
        ce_samples = ce_samples.double()  # [R, n, N]
        second_moments = torch.cat([(ce_samples.mean(1) ** 2).mean(-1)[:, None], (ce_samples**2).mean(-1)], 1)
        onehot = F.one_hot(y_val, k).double()  # [R, N, K]
        class_ce = torch.einsum("rn,rnk->rk", ce_samples.mean(1), onehot) / onehot.sum(1)
        val_accuracy = correct.double() / y_val.shape[1]
        for r in range(runs):
            row = {"epoch": epoch, "step": (epoch + 1) * len(starts), "beta": beta_values[r], "lr": lr}
            # The keys in RedundancyEstimator's order, so both engines write the same columns.
            row.update(stage_metrics("train", float(h_y[r]), train[r, :n], train[r, n], train[r, n + 1],
                                     train[r, n + 2: 2 * n + 2]))
            row["train/loss"] = float(train[r, -1])
            row.update(stage_metrics("val", float(h_y[r]), ce[r].double(), distance[r], tv[r], val_accuracy[r],
                                     second_moments[r], y_val.shape[1]))
            per_class = h_y[r] - nats_to_bits(class_ce[r, : n_classes[r]])
            for c, value in enumerate(per_class.tolist()):
                row[f"val/redundancy_bits_class{c}"] = value
            if inner is not None:
                inner_ce, inner_distance, inner_tv, inner_correct = inner
                row.update(stage_metrics("inner", float(h_y[r]), inner_ce[r].double(), inner_distance[r], inner_tv[r],
                                         inner_correct[r].double() / y_inner.shape[1]))
            histories[r].append(row)
        if checkpoint is not None:
            save_torch_atomic(checkpoint, {"identity": identity, "layout": StackedMLPs.LAYOUT, "epoch": epoch, "net": net.state_dict(),
                                           "optimizer": optimizer.state_dict(),
                                           # one string: pickling the rows' floats one by one cost ~0.1 s an epoch
                                           "histories": json.dumps(histories)})
    net.copy_to(mlps)
    decoders = [{f"decoders.{i}.{key}": value for i, mlp in enumerate(mlps[r * n:(r + 1) * n])
                 for key, value in mlp.state_dict().items()} for r in range(runs)]
    return list(zip(histories, datas, decoders)), first_epoch > 0


