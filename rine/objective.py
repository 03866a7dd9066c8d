"""The RINE objective, in plain torch: the agreement penalty D, the β schedule, and the
per-epoch figures both training engines report (rine.estimator's Lightning module and
rine.batched's stacked runs use exactly these functions).

Training loss:  mean_i CE(f_i(x_i), y) + β_t · D,
D = mean over pairs i < j of the batch mean of a distance between softmax f_i and softmax f_j:
the total variation ½||p_i − p_j||_1 by default (`normalize="tv"`), or the paper's L1 (divided
by K, as the authors' code did, with `normalize="classes"`), optionally Huber-smoothed near 0.
With pairs="to_mean", each decoder is compared with the mean prediction instead, O(n).
Reported redundancy (held-out, eval mode, D excluded):  I∩ = H(Y) − mean_i CE_i, in bits
(paper eq. 8). The disagreement the constraint check reads is always the plain mean total
variation, whatever the penalty's form.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rine.info import nats_to_bits

DISTANCE_NORMALIZATIONS = ("tv", "classes", "none")
DISTANCE_PAIRS = ("all", "to_mean")
BETA_SCHEDULES = ("constrained", "annealed", "fixed")
# BatchNorm statistics for held-out evaluation are recomputed from at most this many training
# rows per forward pass (more rows: a cumulative average over passes).
RECALIBRATION_ROWS = 65_536


@functools.lru_cache(maxsize=None)
def _source_pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i, j


def prediction_distance(probs: torch.Tensor, normalize: str = "tv", pairs: str = "all",
                        smoothing: float = 0.0, n_classes: torch.Tensor | None = None) -> torch.Tensor:
    """The agreement penalty D between the decoders' predictions.

    probs: [..., n_sources, batch, K] (leading dims: independent runs, one D each) -> D [...].
    Per sample and pair, the class-wise differences d = p_i − p_j are summed as |d| (L1), then
    scaled: normalize="tv" halves it (total variation, in [0, 1] for any K); "classes" divides
    by K, as the authors' code did (their D was a mean over batch and classes); "none" is the
    plain L1 of the paper's text. smoothing > 0 replaces |d| by the Huber function with
    threshold ε = smoothing / K (|d| − ε/2 beyond ε, d²/2ε within): the same penalty far from
    agreement, but without the kink at d = 0 whose ±β subgradient makes the decoders chatter
    around agreement. pairs="to_mean" compares each decoder with the mean prediction p̄ via
    d = 2(p_i − p̄), which equals the all-pairs D exactly for two sources; O(n) for many.
    n_classes: each run's K ([...], the leading dims) when runs of different K share a tensor
    padded to the largest K (padded classes have probability 0 in every decoder); default
    probs' last dimension.
    """
    n = probs.shape[-3]
    if n < 2:
        return probs.new_zeros(probs.shape[:-3])
    if n_classes is None:
        k = float(probs.shape[-1])
    else:
        k = n_classes.to(probs.dtype).reshape(*n_classes.shape, 1, 1, 1)  # against [..., pairs, batch, K]
    if pairs == "to_mean":
        diff = 2 * (probs - probs.mean(-3, keepdim=True))  # [..., n, batch, K]
    elif n == 2:  # one pair: slices, not index tensors (an index and its backward fewer every step)
        diff = probs[..., :1, :, :] - probs[..., 1:, :, :]
    else:
        i, j = _source_pairs(n, probs.device)
        diff = probs[..., i, :, :] - probs[..., j, :, :]  # [..., pairs, batch, K]
    size = diff.abs()
    if smoothing > 0:
        eps = smoothing / k
        size = torch.where(size < eps, size * size / (2 * eps), size - eps / 2)
    per_sample = size.sum(-1).mean((-2, -1))
    if normalize == "tv":
        return 0.5 * per_sample
    if normalize == "classes":
        return per_sample / (k if n_classes is None else k.reshape(n_classes.shape))
    return per_sample


def disagreement_tv(probs: torch.Tensor, pairs: str = "all") -> torch.Tensor:
    """Mean total variation ½||p_i − p_j||_1 between decoders (over pairs and batch): [..., n, batch, K] -> [...]."""
    return prediction_distance(probs, "tv", pairs, smoothing=0.0)


@dataclass(frozen=True)
class ConstraintControl:
    """How beta_schedule=constrained raises β until the decoders agree (configs/train.yaml `constraint`).

    After every epoch from `start_epoch` on whose held-out mean total variation exceeds
    `target`, β's multiplier grows by `growth`, up to `max_factor`. It never falls: an
    increasing penalty parameter, as in augmented-Lagrangian methods (Nocedal & Wright,
    Numerical Optimization, §17.3), so that the penalty ends up enforcing D ≈ 0 rather than
    trading it against the cross-entropy at a fixed rate.
    """

    target: float = 0.01
    growth: float = 1.5
    max_factor: float = 16.0
    start_epoch: int = 10

    def factor(self, heldout_tv: Sequence[float]) -> float:
        """β's multiplier for the epoch after those whose held-out disagreements are given, in order."""
        factor = 1.0
        for epoch, tv in enumerate(heldout_tv):
            if epoch >= self.start_epoch and tv > self.target:
                factor = min(factor * self.growth, self.max_factor)
        return factor


def scheduled_beta(beta: float, epoch: int, gamma: float, schedule: str, factor: float = 1.0) -> float:
    """β_t for epoch t: β(1 − γ^t) annealed (paper eq. 17), times `factor` when constrained; β when fixed."""
    if schedule == "fixed":
        return float(beta)
    ramp = float(beta) * (1.0 - gamma**epoch)
    return ramp * factor if schedule == "constrained" else ramp


def stage_metrics(stage: str, h_y_bits: float, ce_nats: torch.Tensor, distance: float, tv: float,
                  accuracy: torch.Tensor, second_moments: torch.Tensor | None = None,
                  count: float | None = None) -> dict[str, float]:
    """One split's per-epoch figures, named as in csv/metrics.csv (both training engines use this).

    ce_nats: [n] mean cross-entropy per decoder; accuracy: [n]; distance: the penalty D; tv:
    the mean total variation. With second_moments ([n + 1]: the mean over samples of
    (mean_i CE_i)² and of each CE_i², nats²) and the sample count, the standard errors of the
    held-out means are added (bits): `redundancy_se_bits`, `usable_info_se_bits_x<i>`.
    """
    n = len(ce_nats)
    ce_bits = nats_to_bits(ce_nats.double())
    metrics = {f"{stage}/redundancy_bits": h_y_bits - float(ce_bits.mean())}
    for i in range(n):
        metrics[f"{stage}/usable_info_bits_x{i + 1}"] = h_y_bits - float(ce_bits[i])
    metrics[f"{stage}/distance"] = float(distance)
    metrics[f"{stage}/disagreement_tv"] = float(tv)
    for i in range(n):
        metrics[f"{stage}/acc_x{i + 1}"] = float(accuracy[i])
    if second_moments is not None and count is not None and count > 1:
        means = torch.cat([ce_nats.double().mean()[None], ce_nats.double()])
        variances = (second_moments.double() - means**2).clamp_min(0) * count / (count - 1)
        errors = nats_to_bits((variances / count).sqrt())
        metrics[f"{stage}/redundancy_se_bits"] = float(errors[0])
        for i in range(n):
            metrics[f"{stage}/usable_info_se_bits_x{i + 1}"] = float(errors[i + 1])
    return metrics


def batch_norm_layers(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


