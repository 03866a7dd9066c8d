"""The RINE objective as a LightningModule, and the β schedule as a Callback (rine.objective
holds the objective's parts; this module trains them with Lightning, one run at a time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn

from rine.errors import RineError
from rine.info import nats_to_bits
from rine.objective import (
    RECALIBRATION_ROWS,
    ConstraintControl,
    batch_norm_layers,
    disagreement_tv,
    prediction_distance,
    scheduled_beta,
    stage_metrics,
)


class BetaSchedule(pl.Callback):
    """Sets the module's β at the start of every epoch (see scheduled_beta).

    Under the constrained schedule the multiplier is recomputed from the held-out
    disagreement of the epochs so far (the module's history, which checkpoints carry), so a
    resumed run continues exactly where it stopped.
    """

    def __init__(self, beta: float, gamma: float = 0.97, schedule: str = "constrained",
                 control: ConstraintControl | None = None):
        self.beta, self.gamma, self.schedule = beta, gamma, schedule
        self.control = control or ConstraintControl()
        self.current_beta = scheduled_beta(beta, 0, gamma, schedule)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: RedundancyEstimator) -> None:
        factor = 1.0
        if self.schedule == "constrained":
            factor = self.control.factor([h["val/disagreement_tv"] for h in pl_module.history])
        self.current_beta = scheduled_beta(self.beta, trainer.current_epoch, self.gamma, self.schedule, factor)
        pl_module.beta = self.current_beta

    def state_dict(self) -> dict:
        return {"beta": self.beta, "gamma": self.gamma, "schedule": self.schedule, "current_beta": self.current_beta}

    def load_state_dict(self, state_dict: dict) -> None:
        self.current_beta = state_dict["current_beta"]


class RedundancyEstimator(pl.LightningModule):
    """n per-source decoders trained jointly with one optimizer under the agreement penalty.

    With one decoder the same module measures plain usable information, H(Y) − CE.
    Per-epoch metrics (train and held-out) go to the loggers and to `self.history`.
    `batch_norm_split`: the training split; when given, the decoders' BatchNorm statistics are
    recomputed on it (in training mode, without augmentation) before every held-out pass, so
    that evaluation uses the statistics of the final weights rather than a running average
    that lags them (which a constant source turns into a division by ~0: −600 bits).
    """

    def __init__(
        self,
        decoders: Sequence[nn.Module],
        h_y_bits: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_decay: float = 0.97,
        distance_normalization: str = "tv",
        distance_pairs: str = "all",
        distance_smoothing: float = 0.0,
        views: nn.Module | None = None,
        batch_norm_split=None,
        eval_batch_size: int = 2000,
        log_history: Callable[[list[dict]], None] | None = None,
    ):
        super().__init__()
        # The settings were checked by rine.config.validate_config (see rine.objective for their meaning).
        self.distance_pairs = distance_pairs
        self.distance_smoothing = float(distance_smoothing)
        self.decoders = nn.ModuleList(decoders)
        self.h_y_bits = float(h_y_bits)
        self.make_optimizer = optimizer
        self.lr_decay = lr_decay
        self.distance_normalization = distance_normalization
        # Image tasks: batches hold raw images and `views` cuts each source from them on the
        # module's device (see on_after_batch_transfer).
        self.views = views
        self.batch_norm_split = batch_norm_split
        self.eval_batch_size = eval_batch_size
        self.log_history = log_history  # called with the whole history after every epoch (rank 0)
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
        """Logits [n, batch, K], per-sample CE [batch, n], penalty D, mean TV, correct counts [n]."""
        logits = self(sources)
        # CE over [batch, K, n] against y broadcast to [batch, n]: one call for all decoders.
        ce = F.cross_entropy(logits.permute(1, 2, 0), y[:, None].expand(-1, len(logits)), reduction="none")
        probs = logits.softmax(-1)
        distance = prediction_distance(probs, self.distance_normalization, self.distance_pairs, self.distance_smoothing)
        tv = disagreement_tv(probs.detach(), self.distance_pairs)
        correct = (logits.argmax(-1) == y).sum(1)
        return logits, ce, distance, tv, correct

    def _accumulate_per_class(self, ce_per_sample: torch.Tensor, y: torch.Tensor, n_classes: int) -> None:
        # index_add on the device: no .item() per step; a class absent so far just keeps 0/0.
        if self._class_sums is None:
            self._class_sums = torch.zeros(2, n_classes, dtype=torch.float64, device=y.device)
        self._class_sums[0].index_add_(0, y, ce_per_sample.detach().double())
        self._class_sums[1].index_add_(0, y, torch.ones_like(y, dtype=torch.float64))

    def _accumulate(self, stage: str, ce: torch.Tensor, distance, tv, correct, loss=None) -> None:
        """Add one batch (per-sample CE [batch, n]) to the epoch's sums; held-out also sums squares."""
        batch_size = len(ce)
        # Sums stay tensors (no .item() per step) so the hot loop never waits on the device;
        # float64 where the device has it: the squares' sums feed a variance (E[x²] − E[x]²).
        dtype = torch.float32 if ce.device.type == "mps" else torch.float64
        ce = ce.detach().to(dtype)
        parts = [ce.sum(0), (distance.detach() * batch_size)[None], (tv * batch_size)[None], correct]
        if loss is not None:
            parts.append((loss.detach() * batch_size)[None])
        if stage == "val":
            parts += [(ce.mean(1) ** 2).sum()[None], (ce**2).sum(0)]
        row = torch.cat([p.to(dtype) for p in parts])
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
        _, ce, distance, tv, correct = self._losses(sources, y)
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
        self._accumulate("train", ce, distance, tv, correct, loss)

    @torch.no_grad()
    def recalibrate_batch_norm(self) -> None:
        """BatchNorm running statistics := the exact statistics of the training split under the current weights."""
        norms = batch_norm_layers(self.decoders)
        if not norms or self.batch_norm_split is None:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the passes below
        training = self.decoders.training
        self.decoders.train()
        split = self.batch_norm_split
        rows = RECALIBRATION_ROWS if self.views is None else self.eval_batch_size
        for start in range(0, len(split), rows):
            sources = [s[start:start + rows].to(self.device) for s in split.sources]
            if self.views is not None:
                sources = self.views(sources[0], train=False)
            for decoder, x in zip(self.decoders, sources):
                decoder(x)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        self.decoders.train(training)

    def on_validation_epoch_start(self) -> None:
        self.recalibrate_batch_norm()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        sources, y = batch
        logits, ce, distance, tv, correct = self._losses(sources, y)
        if dataloader_idx == 1:  # early stopping's inner validation split (rine.data.hold_out_inner_validation)
            self._accumulate("inner", ce, distance, tv, correct)
            return
        self._accumulate("val", ce, distance, tv, correct)
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
        totals = self._sum_over_processes(torch.cat([sums, count.to(sums.dtype)[None]]))
        n_samples = float(totals[-1])
        means = (totals[:-1] / totals[-1]).double().cpu()
        n = self.n_sources
        ce, distance, tv, accuracy = means[:n], means[n], means[n + 1], means[n + 2: 2 * n + 2]
        rest = means[2 * n + 2:]
        second_moments = rest[-(n + 1):] if stage == "val" else None
        metrics = stage_metrics(stage, self.h_y_bits, ce, distance, tv, accuracy, second_moments, n_samples)
        if stage == "train":
            metrics[f"{stage}/loss"] = float(rest[0])
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
        metrics = {"epoch": epoch, "step": self.trainer.global_step, "beta": float(self.beta), "lr": self._epoch_lr}
        metrics.update(self._epoch_metrics("train"))
        if not math.isfinite(metrics["train/loss"]):
            raise RineError(
                f"training loss became NaN/inf in epoch {epoch} (counting from 0); "
                "lower the learning rate (model.optimizer.lr) or beta"
            )
        for stage in ("val", "inner"):
            if stage in self._sums:
                metrics.update(self._epoch_metrics(stage))
        if not math.isfinite(metrics.get("val/redundancy_bits", 0.0)):
            raise RineError(f"the held-out cross-entropy became NaN/inf in epoch {epoch}; "
                            "lower the learning rate (model.optimizer.lr) or beta")
        self.history.append(metrics)
        if self.log_history is not None and self.trainer.is_global_zero:
            self.log_history(self.history)
        self.lr_schedulers().step()
        # Under DDP every process holds the same (already summed) metrics; averaging them
        # changes nothing but keeps Lightning's per-metric warning quiet.
        self.log_dict({k: float(v) for k, v in metrics.items() if k not in ("epoch", "step")}, on_step=False, on_epoch=True,
                      sync_dist=self.trainer.world_size > 1)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rine_history"] = self.history

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = checkpoint.get("rine_history", [])

    def configure_optimizers(self):
        optimizer = self.make_optimizer(self.parameters())
        # Stepped once per epoch in on_train_epoch_end.
        return [optimizer], [torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=self.lr_decay)]
