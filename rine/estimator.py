"""The RINE objective as a LightningModule, and the β schedule as a Callback.

Training loss:  mean_i CE(f_i(x_i), y) + β_t · D,
D = mean over pairs i < j of the batch mean of ||softmax f_i − softmax f_j||_1 (/ K),
or, with pairs="to_mean", 2 · mean_i of ||softmax f_i − mean_j softmax f_j||_1 (/ K), O(n).
Reported redundancy (held-out, eval mode, D excluded):  I∩ = H(Y) − mean_i CE_i, in bits.
Per class c (held-out):  H(Y) − mean over samples with y = c of mean_i CE_i, in bits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from rine.errors import RineError
from rine.info import nats_to_bits

DISTANCE_NORMALIZATIONS = ("classes", "none")
DISTANCE_PAIRS = ("all", "to_mean")
BETA_SCHEDULES = ("annealed", "fixed")


@functools.lru_cache(maxsize=None)
def _source_pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i, j


def prediction_distance(probs: torch.Tensor, normalize: str = "classes", pairs: str = "all") -> torch.Tensor:
    """Mean over source pairs i < j and over the batch of ||p_i − p_j||_1.

    probs: [..., n_sources, batch, K] (leading dims: independent runs, one D each). normalize="classes" divides by K, as the authors' code
    did (their D was a mean over batch and classes), so the paper's β values carry over;
    "none" is the plain L1 distance of the paper's text (equivalent to β scaled by K).
    pairs="to_mean" replaces the n(n−1)/2 pairs by each decoder's distance to the mean
    prediction, times 2 so that for two sources it equals the all-pairs D exactly
    (||p_1 − p̄|| = ||p_2 − p̄|| = ½||p_1 − p_2||) and β keeps its meaning; O(n) for many sources.
    """
    n, k = probs.shape[-3], probs.shape[-1]
    if n < 2:
        return probs.new_zeros(probs.shape[:-3])
    if pairs == "to_mean":
        per_source = 2 * (probs - probs.mean(-3, keepdim=True)).abs().sum(-1)  # [..., n, batch]
    else:
        i, j = _source_pairs(n, probs.device)
        per_source = (probs[..., i, :, :] - probs[..., j, :, :]).abs().sum(-1)  # [..., pairs, batch]
    if normalize == "classes":
        per_source = per_source / k
    return per_source.mean((-2, -1))


def annealed_beta(beta: float, epoch: int, gamma: float, schedule: str) -> float:
    """β_t = β(1 − γ^t) for epoch t (paper eq. 17); constant β for the fixed ablation."""
    return float(beta) if schedule == "fixed" else float(beta) * (1.0 - gamma**epoch)


class BetaSchedule(pl.Callback):
    """Sets the module's β at the start of every epoch; its state travels in checkpoints."""

    def __init__(self, beta: float, gamma: float = 0.97, schedule: str = "annealed"):
        self.beta, self.gamma, self.schedule = beta, gamma, schedule
        self.current_beta = annealed_beta(beta, 0, gamma, schedule)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: RedundancyEstimator) -> None:
        self.current_beta = annealed_beta(self.beta, trainer.current_epoch, self.gamma, self.schedule)
        pl_module.beta = self.current_beta

    def state_dict(self) -> dict:
        return {"beta": self.beta, "gamma": self.gamma, "schedule": self.schedule, "current_beta": self.current_beta}

    def load_state_dict(self, state_dict: dict) -> None:
        self.current_beta = state_dict["current_beta"]


class RedundancyEstimator(pl.LightningModule):
    """n per-source decoders trained jointly with one optimizer under the agreement penalty.

    With one decoder the same module measures plain usable information, H(Y) − CE.
    Per-epoch metrics (train and held-out) go to the loggers and to `self.history`.
    """

    def __init__(
        self,
        decoders: Sequence[nn.Module],
        h_y_bits: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_decay: float = 0.97,
        distance_normalization: str = "classes",
        distance_pairs: str = "all",
        views: nn.Module | None = None,
    ):
        super().__init__()
        if distance_normalization not in DISTANCE_NORMALIZATIONS:
            raise RineError(
                f"distance.normalize={distance_normalization!r}; choose one of {', '.join(DISTANCE_NORMALIZATIONS)}"
            )
        if distance_pairs not in DISTANCE_PAIRS:
            raise RineError(f"distance.pairs={distance_pairs!r}; choose one of {', '.join(DISTANCE_PAIRS)}")
        self.distance_pairs = distance_pairs
        self.decoders = nn.ModuleList(decoders)
        self.h_y_bits = float(h_y_bits)
        self.make_optimizer = optimizer
        self.lr_decay = lr_decay
        self.distance_normalization = distance_normalization
        # Image tasks: batches hold raw images and `views` cuts each source from them on the
        # module's device (see on_after_batch_transfer).
        self.views = views
        # The loop is written out (manual optimization): Lightning's automatic loop costs
        # more per step than the small decoders themselves.
        self.automatic_optimization = False
        self.beta = 0.0  # β_t for the current epoch, set by BetaSchedule
        self._epoch_lr = 0.0  # the lr this epoch trains with, for the log
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._class_sums: torch.Tensor | None = None  # [2, K]: held-out CE sums (nats), counts

    @property
    def n_sources(self) -> int:
        return len(self.decoders)

    def forward(self, sources: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits of every decoder, stacked: [n_sources, batch, K]."""
        return torch.stack([decoder(x) for decoder, x in zip(self.decoders, sources)])

    def _losses(self, sources, y):
        """Logits [n, batch, K], per-sample CE [batch, n], distance D, correct counts [n]."""
        logits = self(sources)
        # CE over [batch, K, n] against y broadcast to [batch, n]: one call for all decoders.
        ce = F.cross_entropy(logits.permute(1, 2, 0), y[:, None].expand(-1, len(logits)), reduction="none")
        distance = prediction_distance(logits.softmax(-1), self.distance_normalization, self.distance_pairs)
        correct = (logits.argmax(-1) == y).sum(1)
        return logits, ce, distance, correct

    def _evaluate(self, sources, y):
        _, ce, distance, correct = self._losses(sources, y)
        return ce.mean(0), distance, correct

    def _accumulate_per_class(self, ce_per_sample: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        # index_add on the device: no .item() per step; a class absent so far just keeps 0/0.
        if self._class_sums is None:
            self._class_sums = torch.zeros(2, n_classes, dtype=torch.float64, device=y.device)
        self._class_sums[0].index_add_(0, y, ce_per_sample.detach().double())
        self._class_sums[1].index_add_(0, y, torch.ones_like(y, dtype=torch.float64))

    def _accumulate(self, stage: str, ce, distance, correct, batch_size: int, loss=None) -> None:
        # Sums stay tensors (no .item() per step) so the hot loop never waits on the device.
        parts = [ce, distance[None], correct / batch_size]
        if loss is not None:
            parts.append(loss[None])
        row = torch.cat(parts).detach() * batch_size
        if stage in self._sums:
            self._sums[stage] += row
        else:
            self._sums[stage] = row
        self._counts[stage] = self._counts.get(stage, 0) + batch_size

    def transfer_batch_to_device(self, batch, device, dataloader_idx):
        # The batch structure is known: skip Lightning's generic (and per-step costly) walk.
        sources, y = batch
        return [x.to(device, non_blocking=True) for x in sources], y.to(device, non_blocking=True)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if self.views is None:
            return batch
        (images,), y = batch
        # Augment only while training (the held-out pass is a validation stage).
        return self.views(images, train=self.trainer.training), y

    def setup(self, stage: str) -> None:
        # Convolutions run fastest in channels_last on an accelerator; the views match it.
        # Converted here, before DDP wraps the module: its gradient buckets copy the layout.
        if self.views is not None and self.trainer.strategy.root_device.type != "cpu":
            self.to(memory_format=torch.channels_last)

    def on_train_epoch_start(self) -> None:
        self._epoch_lr = self.optimizers().param_groups[0]["lr"]

    def training_step(self, batch, batch_idx):
        sources, y = batch
        ce, distance, correct = self._evaluate(sources, y)
        loss = ce.mean() + self.beta * distance
        # A plain backward skips manual_backward's per-step hook dispatch (much of a canonical
        # run's time). Fine for 32-bit and bf16-mixed precision (no loss scaling);
        # run.validate_config rejects fp16, which would need manual_backward. The step goes
        # through Lightning's optimizer wrapper: it counts global steps, which checkpointing needs.
        # Under DDP the gradients must be averaged across processes, which Lightning's
        # manual_backward arranges for a manually optimized module.
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        if self.trainer.world_size > 1:
            self.manual_backward(loss)
        else:
            loss.backward()
        optimizer.step()
        self._accumulate("train", ce, distance, correct, len(y), loss)

    def validation_step(self, batch, batch_idx):
        sources, y = batch
        logits, ce, distance, correct = self._losses(sources, y)
        self._accumulate("val", ce.mean(0), distance, correct, len(y))
        self._accumulate_per_class(ce.mean(1), y, logits.shape[-1])

    def _sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        """Under DDP each process holds the sums of its share of every batch: add them up."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return tensor
        total = tensor.clone()
        torch.distributed.all_reduce(total)  # a sum
        return total

    def _epoch_metrics(self, stage: str) -> dict[str, float]:
        sums = self._sums.pop(stage)
        count = torch.tensor(float(self._counts.pop(stage)), device=sums.device)
        totals = self._sum_over_processes(torch.cat([sums.float(), count[None]]))
        sums = (totals[:-1] / totals[-1]).double().cpu()
        n = self.n_sources
        ce_bits = nats_to_bits(sums[:n])
        metrics = {f"{stage}/redundancy_bits": self.h_y_bits - float(ce_bits.mean())}
        for i in range(n):
            metrics[f"{stage}/usable_info_bits_x{i + 1}"] = self.h_y_bits - float(ce_bits[i])
        metrics[f"{stage}/distance"] = float(sums[n])
        for i in range(n):
            metrics[f"{stage}/acc_x{i + 1}"] = float(sums[n + 1 + i])
        if len(sums) > 2 * n + 1:
            metrics[f"{stage}/loss"] = float(sums[2 * n + 1])
        if stage == "val" and self._class_sums is not None:
            class_sums, counts = self._sum_over_processes(self._class_sums).cpu()
            self._class_sums = None
            # NaN marks a class with no held-out sample; results.json turns it into null.
            per_class = self.h_y_bits - nats_to_bits(class_sums / counts)
            for c, bits in enumerate(per_class.tolist()):
                metrics[f"val/redundancy_bits_class{c}"] = bits
        return metrics

    def on_train_epoch_end(self) -> None:
        # Runs after the epoch's validation, so one row holds both stages.
        epoch = self.current_epoch
        metrics = {"epoch": float(epoch), "beta": float(self.beta), "lr": self._epoch_lr}
        metrics.update(self._epoch_metrics("train"))
        if not torch.isfinite(torch.tensor(metrics["train/loss"])):
            raise RineError(
                f"training loss became NaN/inf in epoch {epoch} (counting from 0); "
                "lower the learning rate (model.optimizer.lr) or beta"
            )
        if "val" in self._sums:
            metrics.update(self._epoch_metrics("val"))
        self.history.append(metrics)
        self.lr_schedulers().step()
        # Under DDP every process holds the same (already summed) metrics; averaging them
        # changes nothing but keeps Lightning's per-metric warning quiet.
        self.log_dict({k: v for k, v in metrics.items() if k != "epoch"}, on_step=False, on_epoch=True,
                      sync_dist=self.trainer.world_size > 1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rine_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = checkpoint.get("rine_history", [])

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.parameters())
        # Stepped once per epoch in on_train_epoch_end.
        return [optimizer], [torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.lr_decay)]
