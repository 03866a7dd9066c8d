"""Per-source decoders: each maps one source to logits over the K classes."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """Flatten -> [Linear -> BatchNorm -> ReLU] per hidden layer -> Linear to logits.

    The paper's decoder for the canonical tasks (App. C.4) with hidden=[25, 15, 10].
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
