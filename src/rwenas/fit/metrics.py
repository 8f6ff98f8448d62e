"""Losses and metrics of a classifier: cross-entropy, top-k hits, and evaluation on test
batches (channels-last, under autocast where the run trains under it)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rwenas.fit.augment import Augmenter
from rwenas.fit.precision import to_channels_last

__all__ = ["classification_loss", "evaluate", "evaluate_batches", "forward_with_aux",
           "topk_correct"]


def classification_loss(logits: torch.Tensor, targets: torch.Tensor,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy; with label smoothing ``eps`` the target is ``1 - eps`` on the true
    class plus ``eps / K`` on every class (computed in float32 under mixed precision)."""
    return F.cross_entropy(logits.float(), targets, label_smoothing=label_smoothing)


def topk_correct(logits: torch.Tensor, targets: torch.Tensor,
                 ks: Sequence[int] = (1, 5)) -> list[int]:
    """How many rows have their target among the ``k`` highest logits, for each ``k``
    (``k`` larger than the number of classes counts every row as correct)."""
    classes = logits.shape[1]
    kmax = min(max(ks), classes)
    top = logits.topk(kmax, dim=1).indices
    hit = top.eq(targets[:, None])
    return [int(hit[:, : min(k, classes)].any(dim=1).sum()) for k in ks]


def forward_with_aux(network: nn.Module, x: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The logits, and the auxiliary head's logits for a network that has one (else
    ``None``)."""
    with_aux = getattr(network, "forward_with_aux", None)
    if with_aux is None:
        return network(x), None
    return with_aux(x)


def evaluate(network: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             augmenter: Augmenter, *, device: torch.device | str = "cpu", batch_size: int = 256,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Loss (plain cross-entropy), top-1 and top-5 accuracy of ``network`` in eval mode
    (channels-last batches, under ``autocast`` with ``amp_dtype`` when given)."""
    n = int(labels.shape[0])
    batches = ((images[start:start + batch_size], labels[start:start + batch_size])
               for start in range(0, n, batch_size))
    return evaluate_batches(network, batches, augmenter, device=device, amp_dtype=amp_dtype)


@torch.inference_mode()
def evaluate_batches(network: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                     augmenter: Augmenter, *, device: torch.device | str = "cpu",
                     amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """:func:`evaluate` over ``(uint8 images, labels)`` batches (e.g. a streamed loader)."""
    device = torch.device(device)
    was_training = network.training
    network.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = [0, 0]
    n = 0
    try:
        for images, labels in batches:
            x = to_channels_last(augmenter.test(images.to(device, non_blocking=True)))
            y = labels.to(device, non_blocking=True)
            n += int(y.shape[0])
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                logits = network(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
            c1, c5 = topk_correct(logits, y, (1, 5))
            correct[0] += c1
            correct[1] += c5
    finally:
        network.train(was_training)
    return {"loss": float(loss_sum) / max(n, 1), "acc": correct[0] / max(n, 1),
            "top5": correct[1] / max(n, 1)}
