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
