"""Per-source decoders: each maps one source to logits over the K classes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rine.objective import RECALIBRATION_ROWS


class MLP(nn.Sequential):
    """Flatten -> [Linear -> BatchNorm -> ReLU] per hidden layer -> Linear to logits.

    input_shape: one sample's shape (flattened); n_classes: K. hidden=[] is a linear decoder.
    The paper's decoder for the canonical tasks (App. C.4) is hidden=[25, 15, 10]
    (model=mlp_paper); the default (model=mlp) is [64, 64].
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        hidden: Sequence[int] = (25, 15, 10),
        batch_norm: bool = True,
    ):
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU())
            width = h
        layers.append(nn.Linear(width, n_classes))
        super().__init__(*layers)


class StackedMLPs(nn.Module):
    """G independent rine.models.MLP decoders as one module: x [G, in, batch] -> logits [G, K, batch].

    Features-major (each decoder's batch along the last axis), so that every layer is one
    batched matrix product W [G, out, in] @ h [G, in, batch] and every BatchNorm is PyTorch's
    own kernel over one contiguous row per (decoder, channel), with no transposed copies; and
    a softmax over the classes (not the innermost axis) is ~20x faster than over an innermost
    axis of a few classes, which PyTorch's CPU kernel handles one row at a time.
    Built from the MLPs themselves (weights copied), so each group starts exactly where its
    own decoder would. Inputs narrower than `in_width` are zero-padded; the matching weight
    columns start at 0, see only zero inputs, and stay 0. Decoders of fewer than `out_width`
    classes get zero logits for the others, which the caller masks (-inf) out of the softmax.
    """

    LAYOUT = "weights [G, out, in]"  # saved with a group checkpoint: an older layout is not resumed

    def __init__(self, mlps: list[nn.Module], in_width: int, out_width: int | None = None):
        super().__init__()
        linears = [[m for m in mlp if isinstance(m, nn.Linear)] for mlp in mlps]
        last = len(linears[0]) - 1
        norms = [[m for m in mlp if isinstance(m, nn.BatchNorm1d)] for mlp in mlps]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for layer in range(len(linears[0])):
            weights = [lin[layer].weight.detach() for lin in linears]  # [out, in]
            biases = [lin[layer].bias.detach() for lin in linears]
            if layer == 0:
                weights = [F.pad(w, (0, in_width - w.shape[1])) for w in weights]
            if layer == last and out_width is not None:
                # Decoders of fewer classes: zero logits for the classes they lack (masked by the caller).
                weights = [F.pad(w, (0, 0, 0, out_width - w.shape[0])) for w in weights]
                biases = [F.pad(b, (0, out_width - b.shape[0])) for b in biases]
            self.weights.append(nn.Parameter(torch.stack(weights).contiguous()))
            self.biases.append(nn.Parameter(torch.stack(biases)))
        self.n_norms = len(norms[0])
        self.bn_weights, self.bn_biases = nn.ParameterList(), nn.ParameterList()
        for layer in range(self.n_norms):
            bns = [norm[layer] for norm in norms]
            self.bn_weights.append(nn.Parameter(torch.stack([bn.weight.detach() for bn in bns])))
            self.bn_biases.append(nn.Parameter(torch.stack([bn.bias.detach() for bn in bns])))
            self.register_buffer(f"running_mean{layer}", torch.stack([bn.running_mean for bn in bns]))
            self.register_buffer(f"running_var{layer}", torch.stack([bn.running_var for bn in bns]))
        # (no BatchNorm, or no hidden layer at all: nothing to normalise)
        self.momentum, self.eps = (norms[0][0].momentum, norms[0][0].eps) if self.n_norms else (None, None)
        self._buffers_for_recalibration: dict[int, torch.Tensor] = {}  # per layer, reused (see recalibrate)

    @torch.no_grad()
    def copy_to(self, mlps: list[nn.Module]) -> None:
        """Write each group's weights and BatchNorm statistics back into its own MLP (the ones
        this was built from, in order), the inverse of __init__'s copy."""
        for g, mlp in enumerate(mlps):
            linears = [m for m in mlp if isinstance(m, nn.Linear)]
            norms = [m for m in mlp if isinstance(m, nn.BatchNorm1d)]
            for layer, linear in enumerate(linears):
                # Slices undo the padding of narrower inputs and of fewer classes.
                linear.weight.copy_(self.weights[layer][g, : linear.out_features, : linear.in_features])
                linear.bias.copy_(self.biases[layer][g, : linear.out_features])
            for layer, bn in enumerate(norms):
                bn.weight.copy_(self.bn_weights[layer][g])
                bn.bias.copy_(self.bn_biases[layer][g])
                bn.running_mean.copy_(getattr(self, f"running_mean{layer}")[g])
                bn.running_var.copy_(getattr(self, f"running_var{layer}")[g])

    @torch.no_grad()
    def recalibrate(self, x: torch.Tensor) -> None:
        """BatchNorm running statistics := the exact statistics of x [G, in, N] under the current
        weights, as RedundancyEstimator.recalibrate_batch_norm computes them: training-mode
        passes over at most RECALIBRATION_ROWS samples each, averaged over the passes.

        The same arithmetic as BatchNorm's training forward, done in place in buffers kept
        between calls: on the whole training split a layer's activations are tens of MB, and a
        fresh tensor of that size costs 4x its matrix product in page faults. The linear layer's
        bias only shifts the mean (BatchNorm removes it), so it is added to the mean alone.
        """
        if not self.n_norms:
            return
        for n, start in enumerate(range(0, x.shape[-1], RECALIBRATION_ROWS)):
            h = x[..., start:start + RECALIBRATION_ROWS]
            rows = h.shape[-1]
            for layer in range(len(self.weights) - 1):
                weight = self.weights[layer]
                shape = (weight.shape[0], weight.shape[1], rows)
                buffer = self._buffers_for_recalibration.get(layer)
                if buffer is None or buffer.shape != shape:
                    buffer = self._buffers_for_recalibration[layer] = torch.empty(shape, dtype=weight.dtype,
                                                                                 device=weight.device)
                h = torch.bmm(weight, h, out=buffer)  # [G, C, rows], without the bias
                mean = h.mean(-1, keepdim=True)
                h.sub_(mean)
                squares = torch.linalg.vector_norm(h, dim=-1, keepdim=True).square_()  # of the centred values
                running_mean, running_var = getattr(self, f"running_mean{layer}"), getattr(self, f"running_var{layer}")
                # A cumulative average over the passes (BatchNorm's momentum=None) with its update
                # formula, so the first pass replaces exactly; the running variance is the
                # unbiased one, the normalisation uses the biased, as BatchNorm.
                average = 1.0 / (n + 1)
                running_mean.mul_(1 - average).add_(mean.squeeze(-1) + self.biases[layer], alpha=average)
                running_var.mul_(1 - average).add_(squares.squeeze(-1) / max(rows - 1, 1), alpha=average)
                scale = self.bn_weights[layer][..., None] * torch.rsqrt(squares / rows + self.eps)
                h.mul_(scale).add_(self.bn_biases[layer][..., None]).relu_()

    def _norm(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        # Every (group, channel) pair as one channel of PyTorch's own BatchNorm: the same
        # kernel, statistics and running-average update as each decoder's nn.BatchNorm1d.
        groups, channels, batch = h.shape
        out = F.batch_norm(
            h.view(1, groups * channels, batch),
            getattr(self, f"running_mean{layer}").view(-1),
            getattr(self, f"running_var{layer}").view(-1),
            self.bn_weights[layer].view(-1),
            self.bn_biases[layer].view(-1),
            self.training,
            self.momentum,
            self.eps,
        )
        return out.view(groups, channels, batch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        h = x
        for layer in range(last):
            h = torch.baddbmm(self.biases[layer][..., None], self.weights[layer], h)
            if self.n_norms:
                h = self._norm(h, layer)
            h = torch.relu(h)
        return torch.baddbmm(self.biases[last][..., None], self.weights[last], h)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 with the CIFAR stem (paper App. C.5).

    The 7x7 stride-2 stem and the max-pool would shrink a 32x32 image to 8x8 before the
    first block; the CIFAR stem is a 3x3 stride-1 conv without pooling. Input channels come
    from the view (1 for a colour channel); the adaptive average pool accepts any crop width.
    """

    def __init__(self, input_shape: Sequence[int], n_classes: int):
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None, num_classes=n_classes)
        net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.net = net

    def forward(self, x):
        return self.net(x)


class SmallCNN(nn.Sequential):
    """A CPU-sized conv net for 28x28 digits and their crops (any height and width >= 1).

    Per block: 3x3 conv (padding 1) -> BatchNorm (as the MLP's) -> ReLU -> 2x2 max-pool
    (ceil mode, so a 1-pixel-wide crop stays 1 wide); then an adaptive average pool to
    `pooled` (a coarse grid that keeps where strokes are, which global pooling would lose)
    and a linear layer to the logits. input_shape is (channels, height, width).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        n_classes: int,
        channels: Sequence[int] = (16, 32),
        pooled: Sequence[int] = (4, 4),
        batch_norm: bool = True,
    ):
        layers: list[nn.Module] = []
        width = input_shape[0]
        for c in channels:
            layers.append(nn.Conv2d(width, c, kernel_size=3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c))
            layers += [nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            width = c
        layers += [nn.AdaptiveAvgPool2d(tuple(pooled)), nn.Flatten(), nn.Linear(width * math.prod(pooled), n_classes)]
        super().__init__(*layers)
