"""The interface every rwenas network offers: a backbone and a separate linear classifier.

RWE freezes ``features`` and trains a fresh classifier on its output, so every network (built-in
or from a plugin space) exposes ``features(x) -> (N, num_features)`` and ``classifier``.
"""

from __future__ import annotations

import torch
from torch import nn


class Network(nn.Module):
    """Backbone (``features``) + linear ``classifier``; ``forward`` chains them."""

    num_features: int
    classifier: nn.Linear
    #: Drop-path probability used in training mode (set by the training schedule).
    drop_path_prob: float = 0.0

    def __init__(self) -> None:
        super().__init__()
        #: Optional auxiliary head (set as a submodule); its parameters are not the model's.
        self.auxiliary_head: nn.Module | None = None

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and, in training mode with an auxiliary head, the auxiliary logits."""
        return self.forward(x), None
